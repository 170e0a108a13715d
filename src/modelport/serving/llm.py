"""The language models a server answers for, opened on first use and kept most-recently-used.

    models = LanguageModels(registry, EngineOptions(slots=4))
    version, engine = await models.get("smollm2@production", "text-generation")
    await models.close()

Every request resolves its reference against the registry ("name", "name:3", "name@alias"),
so an alias move sends new requests to the new version while streams in flight finish on the
old engine; the least recently used engine with nothing in flight is closed past ``max_loaded``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from modelport.errors import InvalidInput, NotFound
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
        max_loaded: int = 2,
    ) -> None:
        self.registry = registry
        self.options = options or EngineOptions()
        self.names = frozenset(names)  # empty: every language model of the registry
        self.max_loaded = max_loaded
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
                    engine = await asyncio.to_thread(self._load, version, task)
                    found = self._open[version.ref] = (version, engine)
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
            _, engine = self._open[ref]
            scheduler = getattr(engine, "scheduler", None)
            if scheduler is not None and (scheduler.running or scheduler.queued):
                continue
            del self._open[ref]
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

    def gauges(self) -> list[tuple[str, int, int, int, int]]:
        rows = []
        for version, engine in list(self._open.values()):
            s = getattr(engine, "scheduler", None)
            if s is not None:
                rows.append((version.name, version.version, s.running, s.queued, s.cache_hits))
        return rows

    def render_metrics(self) -> bytes:
        return self.metrics.render(self.gauges())

    async def close(self) -> None:
        while self._open:
            _, (_, engine) = self._open.popitem()
            await asyncio.to_thread(engine.close)
