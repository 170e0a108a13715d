"""Triton's model configuration and statistics extensions, over REST and gRPC.

    GET /v2/models/digits/config              -> {"name", "platform", "max_batch_size", ...}
    GET /v2/models/digits[/versions/3]/stats  -> {"model_stats": [{"inference_count", ...}]}
    GET /v2/models/stats                      -> every loaded version of every model

One dict of each, built from the loaded model and the server's metrics; the gRPC ``ModelConfig``
and ``ModelStatistics`` calls parse the same dicts into their messages. Statistics are cumulative
counts and nanoseconds as Triton reports them: ``success`` and ``fail`` time whole requests,
``queue`` the wait for a worker or a batch, ``compute_infer`` the model calls (a batch is one
call; ``execution_count`` counts them, ``inference_count`` the rows they ran). Decoding and
encoding are not timed apart: ``compute_input`` and ``compute_output`` count calls with 0 ns, and
that time is in ``success``. ``batch_stats`` stays empty.
"""

from __future__ import annotations

from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from modelport.serving.rest_v2 import Reply, reply

if TYPE_CHECKING:
    from modelport.serving.dataplane import DataPlane
    from modelport.serving.models import LoadedModel

PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "litert": "tflite"}


def model_config(plane: DataPlane, model: LoadedModel) -> dict[str, Any]:
    """The Triton configuration of a loaded version: a batching model (dynamic batching on)
    has ``max_batch_size`` > 0 and dims without the batch dimension, as in Triton."""
    meta = plane.model_metadata(model)
    batch = model.batch
    config: dict[str, Any] = {
        "name": model.name,
        "platform": PLATFORMS.get(model.platform, model.platform),
        "backend": model.platform,
        "version_policy": _policy(plane, model.name),
        "max_batch_size": batch.max_batch_size if batch else 0,
    }
    for key, tensors in (("input", meta["inputs"]), ("output", meta["outputs"])):
        config[key] = [
            {"name": t["name"], "data_type": _data_type(t["datatype"]),
             "dims": t["shape"][1:] if batch else t["shape"]}
            for t in tensors
        ]  # fmt: skip
    if batch:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": batch.max_queue_delay_us}
    return config


def _data_type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _policy(plane: DataPlane, name: str) -> dict[str, Any]:
    config = plane.models.config
    if config.latest_n:
        return {"latest": {"num_versions": config.latest_n}}
    return {"specific": {"versions": plane.models.versions(name)}}


def model_statistics(
    plane: DataPlane, name: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """Statistics of one version, every loaded version of ``name``, or of every model."""
    if name is None:
        keys = [(n, v) for n in plane.models.names() for v in plane.models.versions(n)]
    elif version:
        model = plane.model(name, version)
        keys = [(model.name, model.version)]
    else:
        model = plane.model(name)  # an unknown model is a 404
        keys = [(model.name, v) for v in plane.models.versions(model.name)]
    return {"model_stats": [_stats(plane, n, v) for n, v in keys]}


def _stats(plane: DataPlane, name: str, version: int) -> dict[str, Any]:
    t = plane.models.metrics.totals(name, version)
    calls = int(t["compute"])
    last = int((time() - (perf_counter() - t["last"])) * 1000) if t["last"] else 0
    return {
        "name": name,
        "version": str(version),
        "last_inference": last,
        "inference_count": int(t["rows"]),
        "execution_count": calls,
        "inference_stats": {
            "success": _duration(t["success"], t["success_seconds"]),
            "fail": _duration(t["fail"], t["fail_seconds"]),
            "queue": _duration(t["queue"], t["queue_seconds"]),
            "compute_input": _duration(calls, 0.0),
            "compute_infer": _duration(calls, t["compute_seconds"]),
            "compute_output": _duration(calls, 0.0),
            "cache_hit": _duration(0, 0.0),
            "cache_miss": _duration(0, 0.0),
        },
        "batch_stats": [],
    }


def _duration(count: float, seconds: float) -> dict[str, int]:
    return {"count": int(count), "ns": max(0, int(seconds * 1e9))}


class RestTriton:
    """The REST handlers (routes in app.py)."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def config(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        return reply(model_config(self.plane, self.plane.model(name, version)))

    async def stats(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        return reply(model_statistics(self.plane, name, version))

    async def all_stats(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        return reply(model_statistics(self.plane))
