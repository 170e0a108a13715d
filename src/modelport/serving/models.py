"""The set of loaded models: which versions serve, hot swaps when an alias moves, repository ops.

    models = ModelSet(registry, ServeConfig(), Metrics())
    await models.start()                  # resolve, load + warm, start the registry watcher
    model = models.get("digits")          # the version the serving alias points at
    outputs = await model.infer({"input": batch}, protocol="rest")
    await models.stop()

Every change goes through one path, ``_reconcile``: ask the registry what should be loaded (the
plan), load and warm what is missing off the event loop, swap each model's snapshot in one
assignment, then drain and close what is no longer wanted. A failed load keeps what was serving.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any

from modelport.errors import BackendError, InvalidInput, ModelportError, NotFound, NotReady
from modelport.monitoring.metrics import Metrics
from modelport.registry import ModelVersion, Registry
from modelport.runtimes import Runtime, RuntimeOptions, open_artifact
from modelport.runtimes.text import TextRuntime, is_text_model
from modelport.serving.batching import check_batchable
from modelport.serving.config import BatchConfig, ServeConfig
from modelport.serving.cost import CallCost
from modelport.serving.loaded import LoadedModel, close_runtime, warm_up
from modelport.serving.plan import Plan, Wanted, make_plan
from modelport.signature import Signature
from modelport.uri import validate_name

log = logging.getLogger("modelport.serving")

READY, LOADING, UNAVAILABLE, FAILED = "READY", "LOADING", "UNAVAILABLE", "FAILED"

RETRY_FAILED_AFTER = 60.0  # seconds before the watcher tries a failed version again

__all__ = ["FAILED", "LOADING", "READY", "UNAVAILABLE", "LoadedModel", "ModelSet"]


class _Served:
    """What serves one model name now; replaced as a whole, never mutated."""

    __slots__ = ("versions", "default", "labels")

    def __init__(
        self, versions: dict[int, LoadedModel], default: LoadedModel | None, labels: dict[str, int]
    ) -> None:
        self.versions = versions
        self.default = default
        self.labels = labels


class ModelSet:
    def __init__(self, registry: Registry, config: ServeConfig, metrics: Metrics) -> None:
        self.registry = registry
        self.config = config
        self.metrics = metrics
        workers = config.workers or max(2, _cpu_count())
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="modelport-infer")
        self._loader = ThreadPoolExecutor(2, thread_name_prefix="modelport-load")
        self._served: dict[str, _Served] = {}
        self._status: dict[tuple[str, int], tuple[str, str]] = {}
        self._problems: dict[str, ModelportError] = {}  # name -> why nothing of it serves
        # versions that failed, with when: retried after RETRY_FAILED_AFTER, or at once by load()
        self._failed: dict[tuple[str, int], tuple[ModelportError, float]] = {}
        self._forced: set[str] = set()
        self._unloaded: set[str] = set()
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task | None = None
        self._catalogue: tuple[str, ...] = ()  # every model name of the registry, at the last check
        self.boards: dict[str, Any] = {}  # name -> rollouts.split.Board, kept by the rollout agent
        self._agent: Any = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from modelport.rollouts.agent import RolloutAgent

        await self._reconcile()
        if getattr(self.registry, "folder", False):  # a model repository folder: no rollouts
            self._watcher = asyncio.create_task(self._watch(), name="modelport-folder-watcher")
            return
        self._agent = RolloutAgent(self, self.registry, self.config.rollout_tick,
                                   self.config.rollout_key)  # fmt: skip
        await self._agent.start()
        self._watcher = asyncio.create_task(self._watch(), name="modelport-registry-watcher")

    async def stop(self) -> None:
        if self._agent is not None:
            await self._agent.stop()
            self._agent = None
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
            self._watcher = None
        async with self._lock:
            for name in list(self._served):
                await self._retire(name, list(self._served.pop(name).versions.values()), None)
                self.metrics.set_loaded(name, 0)
        self._executor.shutdown(wait=True)
        self._loader.shutdown(wait=True)

    async def refresh(self) -> None:
        """Reconcile with the registry now (a rollout started or ended)."""
        await self._reconcile()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self._reconcile()
            except Exception as exc:  # the registry may be briefly unreachable: keep serving
                log.warning("registry check failed, still serving what is loaded: %s", exc)

    # -- request path --------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None, label: str | None = None) -> LoadedModel:
        served = self._served.get(name)
        if served is None:
            raise self._missing(name)
        if label is not None:
            number = served.labels.get(label)
            if number is None:
                raise NotFound(
                    f"model {name!r} has no label {label!r} on a loaded version; "
                    f"labels: {sorted(served.labels)}"
                )
            if version is not None and version != number:
                raise NotFound(f"label {label!r} of {name!r} points at version {number}")
            version = number
        if version is None:
            if served.default is None:  # the designated version failed; others may serve
                raise self._missing(name)
            return served.default
        model = served.versions.get(version)
        if model is None:
            if self._status.get((name, version), ("",))[0] == LOADING:
                raise NotReady(f"model {name!r} version {version} is loading")
            raise NotFound(
                f"model {name!r} version {version} is not loaded; loaded: {sorted(served.versions)}"
            )
        return model

    def _missing(self, name: str) -> ModelportError:
        problem = self._problems.get(name)
        if problem is not None:
            if isinstance(problem, NotFound):
                return NotFound(str(problem))
            return NotReady(f"model {name!r} is not available: {problem}")
        if any(key[0] == name and state == LOADING for key, (state, _) in self._status.items()):
            return NotReady(f"model {name!r} is loading")
        return NotFound(f"model {name!r} is not served; served: {sorted(self._served)}")

    def is_ready(self, name: str, version: int | None = None) -> bool:
        try:
            self.get(name, version)
        except ModelportError:
            return False
        return True

    def all_ready(self) -> bool:
        if any(name not in self._unloaded for name in self._problems):
            return False
        return not any(state == LOADING for state, _ in self._status.values())

    def names(self) -> list[str]:
        return sorted(self._served)

    def versions(self, name: str) -> list[int]:
        served = self._served.get(name)
        return sorted(served.versions) if served else []

    def default_version(self, name: str) -> int | None:
        """The version plain model URLs reach (None while nothing can answer them)."""
        served = self._served.get(name)
        return served.default.version if served and served.default else None

    def labels(self, name: str) -> dict[str, int]:
        served = self._served.get(name)
        return dict(served.labels) if served else {}

    # -- repository API ------------------------------------------------------------------------

    def index(self) -> list[dict]:
        rows = [
            {"name": name, "version": version, "state": state, "reason": reason}
            for (name, version), (state, reason) in self._status.items()
        ]
        covered = {row["name"] for row in rows}
        rows += [
            {"name": name, "version": None, "state": UNAVAILABLE, "reason": "not loaded"}
            for name in self._catalogue
            if name not in covered and name not in self._problems and name not in self._served
        ]
        rows += [
            {"name": name, "version": None, "state": UNAVAILABLE if name in self._unloaded
             else FAILED, "reason": str(reason)}
            for name, reason in self._problems.items() if name not in covered
        ]  # fmt: skip
        return sorted(rows, key=lambda r: (r["name"], r["version"] or 0))

    async def load(self, name: str) -> None:
        """Load ``name`` by the serving policy (its latest version if nothing designates one)."""
        validate_name(name)
        self._unloaded.discard(name)
        self._forced.add(name)
        for key in [key for key in self._failed if key[0] == name]:
            del self._failed[key]
        await self._reconcile()
        served = self._served.get(name)
        if served is None or served.default is None:
            error = self._load_error(name)
            if isinstance(error, NotFound):  # nothing to load: forget the name
                self._forced.discard(name)
                self._problems.pop(name, None)
            raise error

    def _load_error(self, name: str) -> ModelportError:
        problem = self._problems.get(name)
        if isinstance(problem, NotFound):
            return NotFound(str(problem))
        return BackendError(f"could not load {name!r}: {problem or 'nothing to load'}")

    async def unload(self, name: str) -> None:
        validate_name(name)
        known = name in self._served or name in self._forced or name in self._problems
        if not known:
            raise NotFound(f"model {name!r} is not served; served: {sorted(self._served)}")
        self._forced.discard(name)
        self._unloaded.add(name)
        await self._reconcile()

    # -- reconciling with the registry ---------------------------------------------------------

    async def _reconcile(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            plan: Plan = await loop.run_in_executor(
                self._loader, make_plan, self.registry, self.config, self._forced, self._unloaded
            )
            self._catalogue = plan.catalogue
            for name in list(self._served):
                if name not in plan.wanted:
                    await self._drop(name, plan.problems.get(name, "no longer designated"))
            for key in [k for k in self._status if k[0] not in plan.wanted]:
                self._status.pop(key)  # failures of a model no longer served are moot
                self._failed.pop(key, None)
            self._problems = {
                name: why for name, why in plan.problems.items() if name not in self._served
            }
            for name in self._unloaded:
                self._problems[name] = NotFound(
                    f"model {name!r} is unloaded; load it through the repository API"
                )
            for name, wanted in plan.wanted.items():
                await self._apply(name, wanted)

    async def _apply(self, name: str, wanted: Wanted) -> None:
        for key in [k for k in self._failed if k[0] == name and k[1] not in wanted.versions]:
            del self._failed[key]  # a version nobody designates any more: forget its failure
            self._status.pop(key, None)
        old = self._served.get(name)
        current = dict(old.versions) if old else {}
        for number in sorted(wanted.versions):
            failed = self._failed.get((name, number))
            if number in current or (failed and perf_counter() - failed[1] < RETRY_FAILED_AFTER):
                continue
            model = await self._load_version(name, number)
            if model is not None:
                current[number] = model
        default = current.get(wanted.default)
        if default is None:  # the designated version failed: keep the one that was serving
            default = old.default if old else None
            if default is None and current and not wanted.follows_alias:
                default = current[max(current)]  # never another version in an alias's place
        if default is None:
            failed = self._failed.get((name, wanted.default))
            self._problems[name] = failed[0] if failed else NotReady("nothing could be loaded")
            if not current:
                return
        else:
            self._problems.pop(name, None)
        keep = {n: m for n, m in current.items() if n in wanted.versions or m is default}
        labels = {alias: n for alias, n in wanted.labels.items() if n in keep}
        if wanted.follows_alias:
            labels.pop(wanted.follows_alias, None)
            if default is not None:
                labels[wanted.follows_alias] = default.version
        for number, model in keep.items():
            model.labels = tuple(sorted(a for a, n in labels.items() if n == number))
        default = self._split(name, default, keep, old.default if old else None)
        self._served[name] = _Served(keep, default, labels)  # the atomic switch
        self.metrics.set_loaded(name, len(keep))
        if old is not None and old.default is not None and default not in (None, old.default):
            self.metrics.model_swapped(name)
            log.info("%s: traffic moved from version %d to %d", name, old.default.version,
                     default.version)  # fmt: skip
        gone = [m for n, m in current.items() if n not in keep]
        if gone:
            await self._retire(name, gone, default)

    def _split(self, name: str, default: Any, keep: dict[int, LoadedModel], old: Any) -> Any:
        """The default, or a traffic split over it while a rollout of ``name`` runs."""
        from modelport.rollouts.split import Split

        if isinstance(default, Split):
            default = default.stable
        board = self.boards.get(name)
        candidate = keep.get(board.traffic.candidate) if board is not None else None
        if default is None or candidate is None or default.version != board.traffic.stable:
            return default
        if isinstance(old, Split) and (old.stable, old.candidate, old.board) == (
            default,
            candidate,
            board,
        ):
            return old
        return Split(default, candidate, board)

    async def _load_version(self, name: str, number: int) -> LoadedModel | None:
        self._status[name, number] = (LOADING, "")
        started = perf_counter()
        loop = asyncio.get_running_loop()
        try:
            record, runtime, batch, seconds = await loop.run_in_executor(
                self._loader, self._open, name, number
            )
        except Exception as exc:
            if not isinstance(exc, ModelportError):
                exc = BackendError(f"{type(exc).__name__}: {exc}")
            self._failed[name, number] = (exc, perf_counter())
            reason = str(exc)
            self._status[name, number] = (FAILED, reason)
            self.metrics.model_load_failed(name)
            log.error("%s:%d failed to load, keeping what serves: %s", name, number, reason)
            return None
        self.metrics.model_loaded(name, perf_counter() - started)
        self._failed.pop((name, number), None)
        self._status[name, number] = (READY, "")
        log.info("%s:%d loaded in %.2fs", name, number, perf_counter() - started)
        cost = CallCost(self.config.inline_below_us / 1e6, seconds)
        return LoadedModel(record, runtime, self.metrics, self._executor, batch, cost)

    def _open(self, name: str, number: int) -> tuple[ModelVersion, Runtime, BatchConfig, float]:
        """Runs in a loader thread: fetch, verify, open and warm one version."""
        record = self.registry.resolve(f"{name}:{number}")
        options = self.config.runtime
        if options is None:
            options = RuntimeOptions.from_settings(self.registry.settings)
        runtime = open_runtime(record, self.registry.path(record), options)
        try:
            seconds = warm_up(runtime)
            batch = self._batching(name, runtime.signature)
        except Exception as exc:
            runtime.close()
            if isinstance(exc, InvalidInput):
                raise
            raise BackendError(f"warm-up inference failed: {exc}") from None
        return record, runtime, batch, seconds

    def _batching(self, name: str, signature: Signature) -> BatchConfig:
        """The model's batch config; a "*" default quietly skips models that cannot batch."""
        batch = self.config.batch_for(name)
        if batch.enabled:
            try:
                check_batchable(signature)
            except InvalidInput as exc:
                if name in self.config.batching:
                    raise InvalidInput(f"cannot batch {name!r}: {exc}") from None
                log.info("%s: dynamic batching off: %s", name, exc)
                return BatchConfig()
        return batch

    async def _drop(self, name: str, reason: str) -> None:
        served = self._served.pop(name)
        self.metrics.set_loaded(name, 0)
        await self._retire(name, list(served.versions.values()), None)
        log.info("%s: unloaded (%s)", name, reason)

    async def _retire(
        self, name: str, models: list[LoadedModel], successor: LoadedModel | None
    ) -> None:
        for model in models:
            if not await model.drain(self.config.request_timeout):
                log.warning("%s:%d still busy after %.0fs; closing it anyway", name,
                            model.version, self.config.request_timeout)  # fmt: skip
            runtime = model.detach(successor)
            self._status.pop((name, model.version), None)
            if runtime is not None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._loader, close_runtime, runtime)


def open_runtime(record: ModelVersion, path: Any, options: RuntimeOptions) -> Runtime:
    """One version's runtime from its artifact (a text model gets its tokenizer in the loop)."""
    if is_text_model(record):
        return TextRuntime.load(path, None, options)
    return open_artifact(path, record.format, record.signature, options)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
