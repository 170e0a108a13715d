"""Explanations over REST: ``POST /v2/models/{m}[/versions/{v}]/explain`` and TF Serving's
``:explain`` verb, answered within a time budget, else 202 and a job to fetch later.

    POST /v2/models/digits/explain   {"inputs": [...], "parameters": {"method": "kernel"}}
      -> 200 {"model_name": ..., "attributions": [...], "base_values": [...], ...}
      -> 202 {"id": "3f2a...", "status": "running"}, Location: /v2/models/digits/explain/3f2a...
    GET  /v2/models/digits/explain/3f2a...   -> 200 the explanation | 202 still running

shap runs in its own worker threads (``workers``, one by default), never on the event loop and
never in the inference pool, so requests keep being answered meanwhile. At most ``max_jobs``
explanations wait or run at a time (429 past that); finished jobs are kept until newer ones
need their place.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from modelport.errors import InvalidInput, ModelportError, NotFound, Overloaded
from modelport.monitoring import explain as ex
from modelport.serving.dataplane import DataPlane, _inputs
from modelport.serving.messages import InferenceRequest
from modelport.serving.rest_v2 import JSON, Reply, error_reply, parse_json, reply
from modelport.serving.rest_v2 import _inputs as v2_tensors

if TYPE_CHECKING:
    import numpy as np

    from modelport.serving.models import LoadedModel


@dataclass(frozen=True)
class ExplainOptions:
    budget: float = 1.0  # seconds an explain request waits before it becomes a job (202)
    max_jobs: int = 16  # explanations waiting or running at once; more is 429
    workers: int = 1  # threads running shap

    def __post_init__(self) -> None:
        if not self.budget >= 0:
            raise InvalidInput(f"the explanation budget must be >= 0 seconds, not {self.budget!r}")
        if self.max_jobs < 1 or self.workers < 1:
            raise InvalidInput("explanations need max_jobs >= 1 and workers >= 1")


class RestExplain:
    def __init__(self, plane: DataPlane, options: ExplainOptions | None = None) -> None:
        self.plane = plane
        self.options = options = options or ExplainOptions()
        self._executor = ThreadPoolExecutor(options.workers, thread_name_prefix="modelport-explain")
        self._jobs: OrderedDict[str, tuple[str, int, asyncio.Future]] = OrderedDict()
        self._pending = 0
        self._backgrounds: OrderedDict[str, np.ndarray] = OrderedDict()  # by blob digest

    async def explain(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        self.plane.model(name, version)  # an unknown model is a 404 whatever the body
        request = InferenceRequest(name, [], version, protocol="rest")
        parsed = parse_json(body)
        request.inputs = v2_tensors(parsed, b"")
        request.id = parsed.get("id")
        return await self.run(request, parsed.get("parameters"))

    async def run(self, request: InferenceRequest, parameters: Any) -> Reply:
        """Explain a decoded request: 200 within the budget, else 202 with a job id."""
        model = self.plane.model(request.model, request.version, request.label)
        method, output = _parameters(parameters)
        ref = f"{model.name}:{model.version}"
        spec = ex.tabular_input(model.signature, ref)
        x = model.signature.coerce_inputs(_inputs(model, request.inputs))[spec.name]
        ex.output_name(model.signature, ref, output)
        if not 1 <= len(x) <= ex.MAX_ROWS:
            raise InvalidInput(f"explain 1 to {ex.MAX_ROWS} rows a request, not {len(x)}")
        loop = asyncio.get_running_loop()
        background = await loop.run_in_executor(None, self._background, model, ref)
        if self._pending >= self.options.max_jobs:
            raise Overloaded(f"{self._pending} explanations are waiting or running; retry later")
        self._pending += 1
        future = loop.run_in_executor(self._executor, ex.explain, model.runtime, x, background,
                                      output, method, ref)  # fmt: skip
        future.add_done_callback(self._done)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.options.budget)
        except TimeoutError:
            job = self._keep(model.name, model.version, future)
            location = f"/v2/models/{model.name}/explain/{job}".encode()
            status, text, headers = reply({"id": job, "status": "running"}, 202)
            return status, text, [*headers, (b"location", location)]
        return _encode(model.name, model.version, result, request.id)

    async def job(self, body: bytes, headers: dict[bytes, bytes], name: str, job: str) -> Reply:
        """A job's explanation (200), its error, or 202 while it runs."""
        found = self._jobs.get(job)
        if found is None or found[0] != name:
            raise NotFound(f"model {name!r} has no explanation job {job!r} (jobs are kept for "
                           f"the {self.options.max_jobs} newest explanations)")  # fmt: skip
        _, version, future = found
        if not future.done():
            return reply({"id": job, "status": "running"}, 202)
        exc = future.exception()
        if isinstance(exc, ModelportError):
            return error_reply(exc)
        if exc is not None:
            return 500, orjson.dumps({"error": f"explanation failed: {exc}"}), JSON
        return _encode(name, version, future.result(), None, job)

    def warm(self) -> bool:
        """When a served version has a background set, load shap in the explain thread now
        (in the background) rather than on the first explanation; True if it does."""
        from modelport.registry.attachments import PREFIX

        models = self.plane.models
        key = PREFIX + ex.KIND
        for name in models.names():
            for version in models.versions(name):
                try:
                    record = models.get(name, version).record
                except ModelportError:  # not ready: its first explanation will load shap
                    continue
                if key in record.tags:
                    self._executor.submit(ex.warm_up)
                    return True
        return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _background(self, model: LoadedModel, ref: str) -> np.ndarray:
        """The version's background set (read fresh from the catalogue, cached by digest)."""
        from modelport.registry.attachments import PREFIX

        version = self.plane.models.registry.resolve(ref)
        digest = version.tags.get(PREFIX + ex.KIND)
        if digest is None:
            raise InvalidInput(ex.how_to_add(ref))
        cached = self._backgrounds.get(digest)
        if cached is None:
            cached = ex.background_of(self.plane.models.registry, version)
            self._backgrounds[digest] = cached
            while len(self._backgrounds) > 8:
                self._backgrounds.popitem(last=False)
        return cached

    def _done(self, future: asyncio.Future) -> None:
        self._pending -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a failed job is reported when fetched, not logged

    def _keep(self, model: str, version: int, future: asyncio.Future) -> str:
        jobs = self._jobs
        while len(jobs) >= self.options.max_jobs:
            oldest = next((key for key, (_, _, f) in jobs.items() if f.done()), None)
            if oldest is None:
                break
            del jobs[oldest]
        job = secrets.token_hex(8)
        jobs[job] = (model, version, future)
        return job


def _parameters(parameters: Any) -> tuple[str, str | None]:
    if parameters is None:
        return "permutation", None
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    method = parameters.get("method", "permutation")
    output = parameters.get("output")
    if not isinstance(method, str) or method not in ex.METHODS:
        raise InvalidInput(f"parameters.method {method!r} is not one of {', '.join(ex.METHODS)}")
    if output is not None and not isinstance(output, str):
        raise InvalidInput("parameters.output must be the name of an output")
    return method, output


def _encode(name: str, version: int, result: ex.Explanation, request_id: Any,
            job: str | None = None) -> Reply:  # fmt: skip
    head: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if request_id is not None:
        head["id"] = request_id
    if job is not None:
        head["job"] = job
    return reply({**head, **result.to_dict()})
