"""The language models a server answers for, opened on first use and kept most-recently-used.

    models = LanguageModels(registry, EngineOptions(slots=4))
    version, engine = await models.get("smollm2@production", "text-generation")
    models = LanguageModels(registry, budget=4 << 30)   # as many as fit in 4 GiB
    await models.close()

Every request resolves its reference against the registry ("name", "name:3", "name@alias"),
so an alias move sends new requests to the new version while streams in flight finish on the
old engine; the least recently used engine with nothing in flight is closed past ``max_loaded``
(default 2), or under a memory ``budget`` when the next one would not fit beside them. A model
whose footprint (``generation.footprint``: weights + key/value cache) is over the whole budget
is refused before it is opened; one that fits only once busy models finish is answered with
429 and Retry-After.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from modelport.errors import InvalidInput, NotFound, Overloaded
from modelport.generation.options import EngineOptions
from modelport.monitoring.genai import GenAIMetrics
from modelport.registry import ModelVersion, Registry
from modelport.uri import ModelRef

TEXT_FORMATS = ("gguf", "genai", "hf")
GENERATE, EMBED = "text-generation", "feature-extraction"


class LanguageModels:
    def __init__(
        self,
        registry: Registry,
        options: EngineOptions | None = None,
        names: tuple[str, ...] = (),
        max_loaded: int | None = None,
        budget: int | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or EngineOptions()
        self.names = frozenset(names)  # empty: every language model of the registry
        self.budget = budget  # bytes for every open model together (None: no limit)
        self.max_loaded = max_loaded or (2 if budget is None else 1 << 20)
        self._needs: dict[str, int] = {}  # bytes each open model was counted for
        self.metrics = GenAIMetrics()
        self._open: OrderedDict[str, tuple[ModelVersion, Any]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def resolve(self, ref: Any) -> ModelVersion:
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("'model' must be a non-empty string: name, name:3 or name@alias")
        parsed = ModelRef.parse(ref)
        if self.names and parsed.name not in self.names:
            raise NotFound(f"model {parsed.name!r} is not served here")
        return await asyncio.to_thread(self.registry.resolve, parsed)

    async def get(self, ref: Any, task: str) -> tuple[ModelVersion, Any]:
        version = await self.resolve(ref)
        have = version.tags.get("task", "")
        if version.format not in TEXT_FORMATS and have != EMBED:
            raise InvalidInput(
                f"model {ref!r} is a {version.format} tensor model, not a language model; "
                "use the V2 inference API for it"
            )
        if have != task:
            raise InvalidInput(
                f"model {ref!r} is a {have or 'unknown'} model; this route is for {task} models"
            )
        found = self._open.get(version.ref)
        if found is None:
            async with self._lock:
                found = self._open.get(version.ref)
                if found is None:
                    need = await self._make_room(version)
                    engine = await asyncio.to_thread(self._load, version, task)
                    found = self._open[version.ref] = (version, engine)
                    self._needs[version.ref] = need
                    await self._evict()
        self._open.move_to_end(version.ref)
        return found

    def _load(self, version: ModelVersion, task: str) -> Any:
        path = self.registry.path(version)
        if task == EMBED:
            from modelport.generation.encoder import open_encoder

            if version.format != "onnx":
                raise InvalidInput(
                    f"convert {version.ref} to ONNX first: "
                    f"modelport convert {version.ref} --to onnx-encoder"
                )
            return open_encoder(path.parent, self.options.threads)
        from modelport.generation.engine import open_engine

        return open_engine(path, version.format, self.options)

    async def _evict(self) -> None:
        for ref in list(self._open):
            if len(self._open) <= self.max_loaded:
                return
            await self._unload(ref)

    async def _make_room(self, version: ModelVersion) -> int:
        """The bytes ``version`` needs; under a budget, after closing idle models (least
        recently used first) until it fits beside the rest."""
        from modelport.generation.footprint import footprint, mib

        path = self.registry.path(version)
        need = await asyncio.to_thread(footprint, path, version.format, version.size, self.options)
        if self.budget is None:
            return need.total
        if need.total > self.budget:
            raise InvalidInput(
                f"model {version.ref} needs {need}, more than the memory budget of "
                f"{mib(self.budget)} (modelport serve --memory-budget)"
            )
        for ref in list(self._open):
            if sum(self._needs.values()) + need.total <= self.budget:
                break
            await self._unload(ref)
        held = sum(self._needs.values())
        if held + need.total > self.budget:
            raise Overloaded(
                f"model {version.ref} needs {need}; {mib(held)} of the {mib(self.budget)} "
                "memory budget is held by models with requests in flight",
                retry_after=1,
            )
        return need.total

    async def _unload(self, ref: str) -> None:
        """Close the open model ``ref`` unless it has sequences running or waiting."""
        _, engine = self._open[ref]
        scheduler = getattr(engine, "scheduler", None)
        if scheduler is not None and (scheduler.running or scheduler.queued):
            return
        del self._open[ref]
        self._needs.pop(ref, None)
        await asyncio.to_thread(engine.close)

    async def listing(self) -> list[ModelVersion]:
        """The newest version of every language model served here."""

        def work() -> list[ModelVersion]:
            found = []
            for summary in self.registry.list_models():
                if summary.latest is None or (self.names and summary.name not in self.names):
                    continue
                version = self.registry.get(f"{summary.name}:{summary.latest}")
                if version.format in TEXT_FORMATS or version.tags.get("task") == EMBED:
                    found.append(version)
            return found

        return await asyncio.to_thread(work)

    def gauges(self) -> list[tuple[str, int, int, int, int, int]]:
        rows = []
        for ref, (version, engine) in list(self._open.items()):
            s = getattr(engine, "scheduler", None)
            if s is not None:
                held = self._needs.get(ref, 0)
                rows.append((version.name, version.version, s.running, s.queued, s.cache_hits,
                             held))  # fmt: skip
        return rows

    def render_metrics(self) -> bytes:
        return self.metrics.render(self.gauges())

    async def close(self) -> None:
        self._needs.clear()
        while self._open:
            _, (_, engine) = self._open.popitem()
            await asyncio.to_thread(engine.close)
