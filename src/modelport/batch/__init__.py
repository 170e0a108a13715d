"""Batch prediction: files in, files out, streaming, resumable, on one machine or a Dask cluster.

    from modelport.batch import predict_batch
    summary = predict_batch("digits@production", "inputs/*.parquet", "scores.parquet",
                            id_column="id", memory_budget="1GiB", progress=True)
    print(summary.rows, summary.errors, summary.throughput)

Inputs are read in chunks; each finished chunk is committed as a part file beside the output, so
a killed job re-run with the same command resumes; the output appears only when complete.
"""

from __future__ import annotations

from modelport._lazy import lazy

_LAZY = {
    "predict_batch": "modelport.batch.api",
    "BatchOptions": "modelport.batch.job",
    "BatchSummary": "modelport.batch.job",
}
__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy(__name__, _LAZY)
