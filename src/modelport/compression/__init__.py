"""Compression: prune, quantize, distill; each result is a new registry version, measured side
by side
with its parent and guarded by an accuracy budget.

    from modelport.compression import quantize_model, prune_model, distill_model, auto_compress
    outcome = quantize_model("digits:1", bits=8, eval_data=x, eval_labels=y,
                             max_accuracy_drop=0.005)
    outcome.version          # ModelVersion (parent, transform, transform_params, metrics) or None
    outcome.rejected         # why the accuracy guard refused it
"""

from __future__ import annotations

from modelport._lazy import lazy

_LAZY = {
    "quantize_model": "modelport.compression.api",
    "prune_model": "modelport.compression.api",
    "distill_model": "modelport.compression.api",
    "evaluate_models": "modelport.compression.api",
    "auto_compress": "modelport.compression.auto",
    "AutoResult": "modelport.compression.auto",
    "Outcome": "modelport.compression.pipeline",
    "Candidate": "modelport.compression.pipeline",
    "Comparison": "modelport.compression.evaluate",
    "TrainConfig": "modelport.compression.training",
    "QuantizeConfig": "modelport.compression.quantize",
    "Dataset": "modelport.compression.data",
    "cpu_info": "modelport.compression.cpu",
    "plot_versions": "modelport.compression.report",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy(__name__, _LAZY)
