"""Batch prediction: files in, files out, streaming, resumable, on one machine or a Dask cluster.

    from modelport.batch import predict_batch
    summary = predict_batch("digits@production", "inputs/*.parquet", "scores.parquet",
                            id_column="id", memory_budget="1GiB", progress=True)
    print(summary.rows, summary.errors, summary.throughput)

Inputs are read in chunks; each finished chunk is committed as a part file beside the output, so
a killed job re-run with the same command resumes; the output appears only when complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.batch.api import predict_batch
    from modelport.batch.job import BatchOptions, BatchSummary

__all__ = ["BatchOptions", "BatchSummary", "predict_batch"]


def __getattr__(name: str) -> Any:
    if name == "predict_batch":
        from modelport.batch.api import predict_batch

        return predict_batch
    if name in ("BatchOptions", "BatchSummary"):
        from modelport.batch import job

        return getattr(job, name)
    raise AttributeError(f"module 'modelport.batch' has no attribute {name!r}")
