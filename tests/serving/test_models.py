"""ModelSet against a real SQLite registry and real ONNX Runtime sessions."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
import pytest

from modelport.api import load as load_runtime
from modelport.api import register
from modelport.errors import InvalidInput, InvalidReference, NotFound, NotReady
from modelport.monitoring.metrics import Metrics
from modelport.registry import Artifact, ModelVersion, Registry
from modelport.runtimes.onnx import OnnxRuntime
from modelport.serving.config import BatchConfig, ServeConfig
from modelport.serving.cost import CallCost
from modelport.serving.loaded import LoadedModel
from modelport.serving.models import ModelSet
from modelport.signature import Signature, TensorSpec
from tests.conftest import make_mlp_onnx

X = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
_files = itertools.count()


class Recording:
    """A real runtime, with a log of the rows of every call and the threads that made them."""

    name = "recording"

    def __init__(self, runtime: OnnxRuntime) -> None:
        self.runtime = runtime
        self.signature = runtime.signature
        self.calls: list[int] = []
        self.threads: set[int] = set()

    def predict(self, feed):
        self.calls.append(len(next(iter(feed.values()))))
        self.threads.add(threading.get_ident())
        return self.runtime.predict(feed)

    def close(self) -> None:
        self.runtime.close()


def add_version(registry: Registry, name: str = "digits", seed: int = 0, alias: str | None = None,
                **mlp: int) -> ModelVersion:  # fmt: skip
    folder = registry.settings.home.parent / "models"
    folder.mkdir(exist_ok=True)
    path = make_mlp_onnx(folder / f"{name}-{next(_files)}.onnx", seed=seed, **mlp)
    return register(path, name, registry=registry, alias=alias)


def add_broken(registry: Registry, name: str = "digits", alias: str | None = None) -> ModelVersion:
    """A version whose file is not a model: ONNX Runtime refuses to load it."""
    path = registry.settings.home.parent / f"broken-{next(_files)}.onnx"
    path.write_bytes(b"this is not an onnx model")
    signature = Signature((TensorSpec("input", "float32", (-1, 4)),),
                          (TensorSpec("probabilities", "float32", (-1, 3)),))  # fmt: skip
    return registry.add(Artifact.single_file(path, "onnx", signature), name, alias=alias)


def expected(registry: Registry, ref: str, x: np.ndarray = X) -> np.ndarray:
    runtime = load_runtime(ref, registry=registry)
    try:
        return runtime.predict({"input": x})["probabilities"]
    finally:
        runtime.close()


@asynccontextmanager
async def running(registry: Registry, **config) -> AsyncIterator[ModelSet]:
    config.setdefault("poll_interval", 0.05)
    models = ModelSet(registry, ServeConfig(**config), Metrics())
    await models.start()
    try:
        yield models
    finally:
        await models.stop()


async def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_serves_every_model_with_the_alias(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, "digits", seed=1)
    add_version(reg, "digits", seed=2, alias="production")
    add_version(reg, "iris", seed=3, alias="production")
    add_version(reg, "unused", seed=4)

    async def main():
        async with running(reg) as models:
            assert models.names() == ["digits", "iris"]
            assert models.all_ready()
            model = models.get("digits")
            assert (model.version, model.labels) == (2, ("production",))
            assert model.platform == "onnxruntime"
            assert models.versions("digits") == [2]
            assert models.labels("digits") == {"production": 2}
            out = await model.infer({"input": X}, "rest")
            np.testing.assert_allclose(out["probabilities"], expected(reg, "digits:2"), rtol=1e-6)
            with pytest.raises(NotFound, match="not served"):
                models.get("unused")
            assert [(r["name"], r["version"], r["state"]) for r in models.index()] == [
                ("digits", 2, "READY"),
                ("iris", 1, "READY"),
                ("unused", None, "UNAVAILABLE"),  # in the registry, not served
            ]

    asyncio.run(main())


def test_explicit_refs_serve_those_versions(sqlite_registry):
    reg = sqlite_registry
    for seed in range(3):
        add_version(reg, seed=seed, alias="production" if seed == 0 else None)

    async def main():
        async with running(reg, refs=("digits:2", "digits:3"), version_policy="specific") as models:
            assert models.versions("digits") == [2, 3]
            assert models.get("digits").version == 3  # the newest pinned version
            for number in (2, 3):
                out = await models.get("digits", number).infer({"input": X}, "rest")
                np.testing.assert_allclose(out["probabilities"], expected(reg, f"digits:{number}"))
            with pytest.raises(NotFound, match="version 1 is not loaded"):
                models.get("digits", 1)

    asyncio.run(main())


def test_aliased_policy_keeps_every_labelled_version(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, seed=1, alias="staging")
    add_version(reg, seed=2, alias="production")
    add_version(reg, seed=3)

    async def main():
        async with running(reg) as models:
            assert models.versions("digits") == [1, 2]
            assert models.labels("digits") == {"production": 2, "staging": 1}
            assert models.get("digits").version == 2
            assert models.get("digits", label="staging").version == 1
            assert models.get("digits", label="staging").labels == ("staging",)
            with pytest.raises(NotFound, match="no label 'canary'"):
                models.get("digits", label="canary")
            with pytest.raises(NotFound, match="points at version 1"):
                models.get("digits", 2, label="staging")
            with pytest.raises(NotFound, match="version 3 is not loaded"):
                models.get("digits", 3)

    asyncio.run(main())


def test_latest_n_policy_keeps_the_newest_versions_and_the_aliased_one(sqlite_registry):
    reg = sqlite_registry
    for seed in range(4):
        add_version(reg, seed=seed, alias="production" if seed == 0 else None)

    async def main():
        async with running(reg, version_policy="latest:2") as models:
            assert models.versions("digits") == [1, 3, 4]
            assert models.get("digits").version == 1
            add_version(reg, seed=9)  # version 5 arrives: the window slides
            await wait_for(lambda: models.versions("digits") == [1, 4, 5])
            assert models.get("digits").version == 1

    asyncio.run(main())


def test_a_bare_reference_follows_the_newest_version(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, seed=1)

    async def main():
        async with running(reg, refs=("digits",), version_policy="specific") as models:
            assert models.get("digits").version == 1
            add_version(reg, seed=2)
            await wait_for(lambda: models.get("digits").version == 2)
            assert models.versions("digits") == [2]

    asyncio.run(main())


def test_bad_configuration_is_refused():
    with pytest.raises(InvalidInput, match="version policy"):
        ServeConfig(version_policy="newest")
    with pytest.raises(InvalidInput, match="version policy"):
        ServeConfig(version_policy="latest:0")
    with pytest.raises(InvalidReference):
        ServeConfig(refs=("digits:x",))
    with pytest.raises(InvalidReference):
        ServeConfig(alias="9lives")
    with pytest.raises(InvalidInput, match="poll_interval"):
        ServeConfig(poll_interval=0)
    with pytest.raises(InvalidInput, match="max_batch_size"):
        BatchConfig(max_batch_size=0)
    with pytest.raises(InvalidInput, match="max_queue_delay_us"):
        BatchConfig(max_queue_delay_us=-1)


def test_bad_input_is_rejected_and_counted(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, alias="production")

    async def main():
        async with running(reg) as models:
            model = models.get("digits")
            with pytest.raises(InvalidInput, match="dimension 1 is 5"):
                await model.infer({"input": np.zeros((1, 5), np.float32)}, "rest")
            with pytest.raises(InvalidInput, match="missing input"):
                await model.infer({}, "rest")
            with pytest.raises(InvalidInput, match="dtype"):
                await model.infer({"input": np.array([["a"] * 4])}, "rest")
            await model.infer({"input": X}, "rest")
            text = models.metrics.render().decode()
            labels = 'model="digits",version="1",protocol="rest"'
            assert f'modelport_requests_total{{{labels},outcome="client_error"}} 3' in text
            assert f'modelport_requests_total{{{labels},outcome="success"}} 1' in text
            assert 'modelport_compute_duration_seconds_count{model="digits",version="1"} 1' in text

    asyncio.run(main())


def test_repository_load_and_unload(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, "digits", seed=1, alias="production")
    add_version(reg, "iris", seed=2)
    add_version(reg, "iris", seed=3)

    async def main():
        async with running(reg) as models:
            assert models.names() == ["digits"]
            await models.load("iris")  # no serving alias: its newest version
            assert models.get("iris").version == 2
            await models.unload("digits")
            with pytest.raises(NotFound, match="unloaded"):
                models.get("digits")
            assert models.all_ready()  # an unloaded model does not make the server unready
            assert {"name": "digits", "version": None, "state": "UNAVAILABLE",
                    "reason": "model 'digits' is unloaded; load it through the repository API"
                    } in models.index()  # fmt: skip
            await asyncio.sleep(0.2)  # several registry checks: an unloaded model stays unloaded
            assert models.names() == ["iris"]
            await models.load("digits")
            assert models.get("digits").version == 1
            with pytest.raises(NotFound, match="not found in the registry"):
                await models.load("missing")
            with pytest.raises(NotFound):
                await models.unload("missing")
            with pytest.raises(InvalidReference):
                await models.load("../etc")
            assert models.names() == ["digits", "iris"]

    asyncio.run(main())


def test_a_model_that_fails_to_load_is_reported_not_served(sqlite_registry, caplog):
    reg = sqlite_registry
    add_broken(reg, "digits", alias="production")
    add_version(reg, "iris", alias="production")

    async def main():
        async with running(reg) as models:
            assert models.names() == ["iris"]
            assert not models.all_ready()
            with pytest.raises(NotReady, match="ONNX Runtime could not load"):
                models.get("digits")
            assert not models.is_ready("digits")
            [row] = [r for r in models.index() if r["name"] == "digits"]
            assert row["state"] == "FAILED" and "could not load" in row["reason"]
            assert 'modelport_model_loads_total{model="digits",outcome="failure"} 1' in (
                models.metrics.render().decode()
            )
            with pytest.raises(Exception, match="could not load"):
                await models.load("digits")  # an explicit load retries and reports again
            await models.unload("digits")
            assert [(r["name"], r["version"], r["state"]) for r in models.index()] == [
                ("digits", None, "UNAVAILABLE"), ("iris", 1, "READY")]  # fmt: skip

    asyncio.run(main())
    assert any("digits:1 failed to load" in r.getMessage() for r in caplog.records)


def test_batching_is_refused_for_a_model_without_a_batch_dimension(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, "padded", alias="production", initializer_bytes=1024)  # scalar output
    add_version(reg, "digits", alias="production")

    async def main():
        explicit = {"padded": BatchConfig(max_batch_size=8)}
        async with running(reg, batching=explicit) as models:
            [row] = [r for r in models.index() if r["name"] == "padded"]
            assert row["state"] == "FAILED" and "batch dimension" in row["reason"]
        default = {"*": BatchConfig(max_batch_size=8)}
        async with running(reg, batching=default) as models:  # the default skips what cannot batch
            assert models.names() == ["digits", "padded"]
            out = await models.get("padded").infer({"input": X}, "rest")
            assert out["probabilities"].shape == (3, 3)

    asyncio.run(main())


def test_a_missing_alias_reference_is_reported(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, "digits")

    async def main():
        async with running(reg, refs=("digits@staging",)) as models:
            with pytest.raises(NotFound, match="no alias 'staging'"):
                models.get("digits")
            reg.set_alias("digits", "staging", 1)
            await wait_for(lambda: models.is_ready("digits"))
            assert models.get("digits", label="staging").version == 1

    asyncio.run(main())


def test_cheap_calls_run_on_the_loop_and_costly_ones_in_a_worker(sqlite_registry):
    reg = sqlite_registry
    record = add_version(reg)
    small, large = np.ones((1, 4), np.float32), np.ones((20_000, 4), np.float32)

    async def threads_used(cost: CallCost, x: np.ndarray) -> set[int]:
        runtime = Recording(load_runtime(record, registry=reg))
        with ThreadPoolExecutor(1) as pool:
            model = LoadedModel(record, runtime, Metrics(), pool, cost=cost)
            await model.infer({"input": x}, "rest")
        return runtime.threads

    async def main():
        loop_thread = threading.get_ident()
        assert await threads_used(CallCost(0.001, per_row=1e-6), small) == {loop_thread}
        assert loop_thread not in await threads_used(CallCost(0.001, per_row=1e-6), large)
        assert loop_thread not in await threads_used(CallCost(0.0), small)  # inline off

    asyncio.run(main())
    with pytest.raises(InvalidInput, match="inline_below_us"):
        ServeConfig(inline_below_us=-1)


def test_a_failed_version_is_retried_after_a_while(sqlite_registry, monkeypatch):
    import modelport.serving.models as models_module

    reg = sqlite_registry
    add_broken(reg, "digits", alias="production")
    # the watcher reads a clock the test moves: a paused test process cannot bring the retry
    now = [0.0]
    monkeypatch.setattr(models_module, "perf_counter", lambda: now[0])

    def failures(models: ModelSet) -> int:
        text = models.metrics.render().decode()
        line = 'modelport_model_loads_total{model="digits",outcome="failure"} '
        return int(text.split(line)[1].split()[0]) if line in text else 0

    async def main():
        async with running(reg) as models:  # registry checked every 0.05 s
            assert failures(models) == 1
            now[0] += models_module.RETRY_FAILED_AFTER - 0.01
            await asyncio.sleep(0.2)  # several registry checks
            assert failures(models) == 1  # not retried on every check, nor before its time
            now[0] += 0.02
            await wait_for(lambda: failures(models) >= 2)

    asyncio.run(main())


def test_a_failed_alias_target_is_never_replaced_by_another_version(sqlite_registry):
    reg = sqlite_registry
    add_broken(reg, "digits", alias="production")  # version 1
    add_version(reg, "digits", seed=2, alias="staging")  # version 2

    async def main():
        async with running(reg) as models:
            with pytest.raises(NotReady, match="could not load"):
                models.get("digits")  # plain URLs are production's: not staging instead
            assert models.get("digits", label="staging").version == 2
            assert models.labels("digits") == {"staging": 2}
            assert not models.is_ready("digits") and not models.all_ready()
            assert [(r["version"], r["state"]) for r in models.index()] == [
                (1, "FAILED"), (2, "READY")]  # fmt: skip
            with pytest.raises(Exception, match="could not load"):
                await models.load("digits")
        async with running(reg, refs=("digits:1",)) as models:  # + staging, by the policy
            assert models.get("digits").version == 2  # no alias followed: the newest loaded
            assert models.versions("digits") == [2]

    asyncio.run(main())


def test_a_language_model_under_the_alias_is_left_to_the_openai_routes(sqlite_registry):
    """A GGUF file carrying the serving alias is not loaded as a tensor model (it would show as
    FAILED and keep readiness false); the tensor models beside it are served as usual."""
    from modelport.serving.plan import make_plan
    from tests.generation.conftest import smollm2_path

    reg = sqlite_registry
    add_version(reg, "digits", seed=1, alias="production")
    register(smollm2_path(), "chat", registry=reg, alias="production")
    plan = make_plan(reg, ServeConfig())
    assert sorted(plan.wanted) == ["digits"] and not plan.problems

    async def main():
        async with running(reg) as models:
            assert models.names() == ["digits"] and models.all_ready()

    asyncio.run(main())
