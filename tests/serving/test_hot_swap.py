"""Hot swaps under load: an alias moves in the registry while clients keep calling."""

from __future__ import annotations

import asyncio
import gc
import logging

import numpy as np
import pytest

from modelport.runtimes import RuntimeOptions
from modelport.serving.config import BatchConfig
from tests.serving.test_models import X, add_broken, add_version, expected, running, wait_for


class LoadGenerator:
    """``clients`` tasks calling ``ModelSet.get(name).infer`` in a loop, recording every answer."""

    def __init__(self, models, outputs: dict[int, np.ndarray], clients: int = 16) -> None:
        self.models = models
        self.outputs = outputs
        self.failures: list[str] = []
        self.served: list[int | None] = []  # which version's output each request received
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._client()) for _ in range(clients)]

    async def _client(self) -> None:
        while not self._stop.is_set():
            try:
                out = await self.models.get("digits").infer({"input": X}, "test")
            except Exception as exc:
                self.failures.append(repr(exc))
                await asyncio.sleep(0)
                continue
            got = out["probabilities"]
            match = [v for v, want in self.outputs.items() if np.allclose(got, want, rtol=1e-5)]
            self.served.append(match[0] if len(match) == 1 else None)

    async def more(self, n: int) -> None:
        """Wait until ``n`` more requests were answered."""
        target = len(self.served) + len(self.failures) + n
        await wait_for(lambda: len(self.served) + len(self.failures) >= target)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batched"])
def test_moving_the_alias_under_load_fails_no_request(sqlite_registry, batching):
    reg = sqlite_registry
    batch = {"*": BatchConfig(max_batch_size=8, max_queue_delay_us=2000)} if batching else {}
    add_version(reg, seed=1, alias="production")
    add_version(reg, seed=2)
    outputs = {1: expected(reg, "digits:1"), 2: expected(reg, "digits:2")}
    assert not np.allclose(outputs[1], outputs[2])

    async def main():
        async with running(reg, batching=batch) as models:
            load = LoadGenerator(models, outputs)
            await load.more(50)
            for target in (2, 1, 2):
                reg.set_alias("digits", "production", target)
                await wait_for(lambda t=target: [r["version"] for r in models.index()] == [t])
                mark = len(load.served)  # the old version is drained and closed by now
                await load.more(100)
                assert set(load.served[mark:]) == {target}, "traffic must be on the new version"
            await load.stop()
            assert load.failures == []
            assert None not in load.served
            assert load.served.count(1) > 0 and load.served.count(2) > 0
            assert models.get("digits").labels == ("production",)
            assert [(r["version"], r["state"]) for r in models.index()] == [(2, "READY")]
            text = models.metrics.render().decode()
            assert 'modelport_model_swaps_total{model="digits"} 3' in text
            assert 'modelport_models_loaded{model="digits"} 1' in text
            if batching:  # requests were merged on both sides of each swap
                for version in (1, 2):
                    series = models.metrics.model_series("digits", version)
                    assert series.batch_size.sum > series.batch_size.count
            labels = 'model="digits",version="1",protocol="test"'
            assert f"modelport_requests_in_flight{{{labels}}} 0" in text

    asyncio.run(main())


def test_a_failed_load_keeps_the_old_version_serving(sqlite_registry, caplog):
    reg = sqlite_registry
    add_version(reg, seed=1, alias="production")
    add_broken(reg)  # version 2
    add_version(reg, seed=3)
    outputs = {1: expected(reg, "digits:1"), 3: expected(reg, "digits:3")}
    caplog.set_level(logging.INFO, logger="modelport.serving")

    async def main():
        async with running(reg) as models:
            load = LoadGenerator(models, outputs, clients=8)
            reg.set_alias("digits", "production", 2)
            await wait_for(lambda: any(r["state"] == "FAILED" for r in models.index()))
            await load.more(100)
            assert models.get("digits").version == 1
            assert models.labels("digits") == {"production": 1}  # what actually serves
            assert models.all_ready()
            [failed] = [r for r in models.index() if r["version"] == 2]
            assert "could not load" in failed["reason"]
            text = models.metrics.render().decode()
            assert 'modelport_model_loads_total{model="digits",outcome="failure"} 1' in text
            assert 'modelport_model_swaps_total{model="digits"}' not in text
            reg.set_alias("digits", "production", 3)  # a good version: the swap goes through
            await wait_for(lambda: models.versions("digits") == [3])
            await load.more(50)
            await load.stop()
            assert load.failures == []
            assert set(load.served) == {1, 3}
            assert [(r["version"], r["state"]) for r in models.index()] == [(3, "READY")]

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert any("digits:2 failed to load, keeping what serves" in m for m in messages)
    assert any("traffic moved from version 1 to 3" in m for m in messages)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_returns_after_the_old_version_is_unloaded(sqlite_registry):
    reg = sqlite_registry
    weights = 48 << 20  # each version holds 48 MiB of weights
    add_version(reg, seed=1, alias="production", initializer_bytes=weights)
    add_version(reg, seed=2, initializer_bytes=weights)
    # no graph optimisation: the weights stay in the session instead of being folded away
    options = RuntimeOptions(graph_optimization="disable")

    async def main():
        async with running(reg, runtime=options) as models:
            await models.get("digits").infer({"input": X}, "test")
            reg.set_alias("digits", "production", 2)
            await wait_for(lambda: models.versions("digits") == [2])
            reg.set_alias("digits", "production", 1)
            await wait_for(lambda: models.versions("digits") == [1])
            gc.collect()
            baseline = rss_bytes()
            for i in range(6):
                target = 2 if i % 2 == 0 else 1
                reg.set_alias("digits", "production", target)
                await wait_for(lambda t=target: models.versions("digits") == [t])
                out = await models.get("digits").infer({"input": X}, "test")
                assert out["probabilities"].shape == (3, 3)
            gc.collect()
            grown = rss_bytes() - baseline
            # six swaps that leaked would add 6 x 48 MiB; allow half a model of noise
            assert grown < weights // 2, f"RSS grew by {grown / 2**20:.0f} MiB over six swaps"

    asyncio.run(main())


def test_moving_the_alias_under_http_load_fails_no_request(sqlite_registry):
    """The same swap through the real server on a loopback socket, with real HTTP clients."""
    import httpx

    from modelport.serving.app import ServerOptions, serve
    from modelport.serving.config import ServeConfig

    reg = sqlite_registry
    for seed in (1, 2, 3):
        add_version(reg, seed=seed, alias="production" if seed == 1 else None)
    outputs = {v: expected(reg, f"digits:{v}") for v in (1, 2, 3)}
    targets = (2, 3, 1)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(X.shape),
                        "data": X.ravel().tolist()}]}  # fmt: skip

    async def main():
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        options = ServerOptions(host="127.0.0.1", http_port=0, grpc_port=None)
        config = ServeConfig(poll_interval=0.05)
        server = asyncio.create_task(
            serve(reg, config, options, lambda models, port, _: ready.set_result((models, port)))
        )
        models, port = await asyncio.wait_for(ready, 60)
        statuses: list[int] = []
        # (version, output, epoch when sent, swaps begun when answered)
        answers: list[tuple[str, np.ndarray, int, int]] = []
        epoch = [-1]  # i once targets[i] alone serves (the old version closed); -1 during a swap
        begun = [0]  # swaps begun: targets[begun - 1] is the last version designated
        stop = asyncio.Event()

        async def client(http: httpx.AsyncClient) -> None:
            while not stop.is_set():
                sent_in = epoch[0]
                reply = await http.post("/v2/models/digits/infer", json=body)
                statuses.append(reply.status_code)
                if reply.status_code == 200:
                    data = reply.json()
                    got = np.array(data["outputs"][0]["data"], np.float32).reshape(3, 3)
                    answers.append((data["model_version"], got, sent_in, begun[0]))

        async def answered(n: int) -> None:
            target = len(statuses) + n
            await wait_for(lambda: len(statuses) >= target)

        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as http:
            tasks = [asyncio.create_task(client(http)) for _ in range(8)]
            try:
                await answered(30)
                for i, target in enumerate(targets):
                    epoch[0], begun[0] = -1, i + 1
                    reg.set_alias("digits", "production", target)
                    await wait_for(lambda t=target: [r["version"] for r in models.index()] == [t])
                    epoch[0] = i  # the old version is drained and closed
                    await answered(30)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                server.cancel()
                await asyncio.gather(server, return_exceptions=True)
        assert set(statuses) == {200}, f"failed requests: {len(statuses) - statuses.count(200)}"
        for version, got, sent_in, answered_at in answers:  # the output of the version it names
            np.testing.assert_allclose(got, outputs[int(version)], rtol=1e-5)
            if sent_in >= 0:  # sent once targets[sent_in] alone served: that version or one
                allowed = set(targets[sent_in:answered_at])  # designated while it was in flight
                assert int(version) in allowed, f"epoch {sent_in} request answered by {version}"
        assert {v for v, *_ in answers} == {"1", "2", "3"}
        assert {sent_in for _, _, sent_in, _ in answers} == {-1, 0, 1, 2}

    asyncio.run(main())


def test_an_alias_moved_through_another_registry_handle_is_followed(registry):
    """On SQLite and PostgreSQL: the move comes from another connection, as from another host."""
    from modelport.registry import Registry

    add_version(registry, seed=1, alias="production")
    add_version(registry, seed=2)
    outputs = {1: expected(registry, "digits:1"), 2: expected(registry, "digits:2")}

    async def main():
        async with running(registry) as models:
            load = LoadGenerator(models, outputs, clients=4)
            await load.more(20)
            with Registry(registry.settings) as other:
                other.set_alias("digits", "production", 2)
            await wait_for(lambda: [r["version"] for r in models.index()] == [2])
            await load.more(20)
            await load.stop()
            assert load.failures == [] and load.served[-1] == 2

    asyncio.run(main())
