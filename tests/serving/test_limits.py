"""Per-client limits: a key over its rate or concurrency gets 429 with Retry-After in the V2 error
body while another key is never refused; without keys the client address is the client; the
global in-flight cap sheds with 503; health probes are never limited."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from modelport.errors import Busy, InvalidInput, Overloaded
from modelport.serving.config import ServeConfig
from modelport.serving.limits import Limiter, Limits
from tests.rollouts.servers import serve
from tests.serving.conftest import v2_input

BODY = {"inputs": [v2_input(np.ones((1, 4), np.float32))]}
NOISY, QUIET = "noisy-key-0123", "quiet-key-4567"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_and_concurrency() -> None:
    clock = Clock()
    limiter = Limiter(Limits(rate=2, burst=3, concurrency=2), clock)
    for _ in range(2):
        limiter.admit("a")
    with pytest.raises(Overloaded, match="2 requests in flight"):
        limiter.admit("a")  # concurrency first: nothing was taken from the bucket
    limiter.release("a")
    limiter.admit("a")  # the third token of the burst
    limiter.release("a")
    limiter.release("a")
    with pytest.raises(Overloaded, match="limit of 2 requests per second") as info:
        limiter.admit("a")
    assert info.value.retry_after == 1
    limiter.admit("b")  # another client has its own bucket
    clock.now += 0.5  # one token back at 2/s
    limiter.admit("a")
    limiter.release("a")
    assert limiter.inflight == 1


def test_retry_after_covers_the_wait() -> None:
    clock = Clock()
    limiter = Limiter(Limits(rate=0.25, burst=1), clock)
    limiter.admit("slow")
    with pytest.raises(Overloaded) as info:
        limiter.admit("slow")
    assert info.value.retry_after == 4


def test_global_cap_and_forgetting_idle_clients(monkeypatch) -> None:
    from modelport.serving import limits

    monkeypatch.setattr(limits, "_PRUNE_ABOVE", 8)
    clock = Clock()
    limiter = Limiter(Limits(rate=10, max_inflight=3), clock)
    for name in "abc":
        limiter.admit(name)
    with pytest.raises(Busy, match="3 requests in flight"):
        limiter.admit("d")
    for name in "abc":
        limiter.release(name)
    for i in range(20):
        limiter.admit(f"c{i}")
        limiter.release(f"c{i}")
        clock.now += 1
    assert len(limiter._clients) <= 9


@pytest.mark.parametrize("bad", [{"rate": -1}, {"concurrency": -2}, {"rate": float("nan")}])
def test_bad_limits(bad) -> None:
    with pytest.raises(InvalidInput, match="must be a number >= 0"):
        Limits(**bad)


def _flood(url: str, key: str, count: int, replies: list) -> None:
    with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": key}) as client:
        for _ in range(count):
            replies.append(client.post("/v2/models/mlp/infer", json=BODY))


def test_a_noisy_key_is_limited_and_the_other_is_not(served_registry, tmp_path) -> None:
    home = served_registry.settings.home
    keys = {"MODELPORT_API_KEYS": f"noisy=infer:{NOISY},quiet=infer:{QUIET}"}
    server = serve(home, "--rate-limit", "40", "--burst", "8", "--concurrency-limit", "2",
                   log=tmp_path / "serve.log", env=keys, grpc=True)  # fmt: skip
    try:
        noisy: list[httpx.Response] = []
        floods = [threading.Thread(target=_flood, args=(server.url, NOISY, 60, noisy))
                  for _ in range(4)]  # fmt: skip
        for thread in floods:
            thread.start()
        quiet: list[httpx.Response] = []
        with httpx.Client(base_url=server.url, timeout=10, headers={"X-API-Key": QUIET}) as c:
            # during the floods (a refused flood ends fast: five requests at least, whatever)
            while (any(t.is_alive() for t in floods) or len(quiet) < 5) and len(quiet) < 200:
                quiet.append(c.post("/v2/models/mlp/infer", json=BODY))
                threading.Event().wait(0.05)  # 20 requests a second, under the limit
                assert c.get("/v2/health/ready").status_code == 200
        for thread in floods:
            thread.join()
        refused = [r for r in noisy if r.status_code == 429]
        assert len(noisy) == 240 and refused and len(refused) < 240
        assert {r.status_code for r in noisy} <= {200, 429}
        for reply in refused:
            assert int(reply.headers["retry-after"]) >= 1
            error = reply.json()["error"]
            assert "noisy" in error and ("per second" in error or "in flight" in error)
        assert len(quiet) >= 5 and [r.status_code for r in quiet] == [200] * len(quiet)
        _grpc_limited(server.grpc_port)
    finally:
        assert server.stop() == 0


def _grpc_limited(port: int) -> None:
    """Over gRPC the same keys meet the same limits (RESOURCE_EXHAUSTED, the other key not)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    time.sleep(0.5)  # the noisy key's bucket refills after the HTTP flood
    try:
        codes: list[str] = []
        # back to back, until refused: on a loaded machine a pause refills the bucket meanwhile
        while "StatusCode.RESOURCE_EXHAUSTED" not in codes and len(codes) < 2000:
            try:
                client.is_model_ready("mlp", headers={"x-api-key": NOISY})
                codes.append("OK")
            except InferenceServerException as exc:
                assert "noisy is over its limit" in exc.message()
                codes.append(exc.status())
        assert codes[0] == "OK" and codes.count("OK") >= 8  # the burst, then refusals
        assert set(codes) == {"OK", "StatusCode.RESOURCE_EXHAUSTED"}
        assert client.is_model_ready("mlp", headers={"x-api-key": QUIET})
    finally:
        client.close()


@pytest.mark.anyio
async def test_addresses_without_keys_and_the_global_cap(served_registry) -> None:
    from modelport.serving.app import ServerOptions, build

    options = ServerOptions(limits=Limits(rate=1, burst=2, max_inflight=2))
    models, _metrics, _plane, app = build(served_registry, ServeConfig(inline_below_us=0), options)
    await models.start()
    try:

        def client(address: str, port: int = 4000) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, port))
            return httpx.AsyncClient(transport=transport, base_url="http://modelport")

        async with client("10.0.0.1") as one, client("10.0.0.2") as two, \
                client("10.0.0.1", 4001) as again:  # fmt: skip
            first = [await one.post("/v2/models/mlp/infer", json=BODY) for _ in range(2)]
            first.append(await again.post("/v2/models/mlp/infer", json=BODY))  # a new connection
            assert [r.status_code for r in first] == [200, 200, 429]
            assert "10.0.0.1 is over" in first[2].json()["error"]
            assert (await two.post("/v2/models/mlp/infer", json=BODY)).status_code == 200
            assert (await one.get("/v2/health/live")).status_code == 200  # probes pass
            addresses = [f"10.0.1.{i}" for i in range(12)]
            clients = [client(a) for a in addresses]
            replies = await asyncio.gather(
                *(c.post("/v2/models/mlp/infer", json=BODY) for c in clients)
            )
            for c in clients:
                await c.aclose()
        codes = sorted(r.status_code for r in replies)
        assert 200 in codes and 503 in codes and set(codes) == {200, 503}
        shed = next(r for r in replies if r.status_code == 503)
        assert shed.headers["retry-after"] == "1" and "in flight" in shed.json()["error"]
    finally:
        await models.stop()
