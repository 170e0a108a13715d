"""Three `modelport serve` replicas on one PostgreSQL catalogue and one blob folder behind a real
nginx: an alias move reaches every replica; SIGTERM stops accepting, finishes the request in
flight and exits 0; a rolling restart of every replica under a paced load fails no request."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from modelport.registry import Registry
from modelport.settings import Settings
from tests.pgserver import PostgresServer
from tests.rollouts.conftest import fill, inputs
from tests.rollouts.load import Load
from tests.rollouts.servers import balancer, requests_served, serve
from tests.rollouts.servers import wait_for as _wait

POLL = 0.5


@pytest.fixture(scope="module")
def cluster(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("replicas")
    database = postgres.create_database()
    url = postgres.url(database)
    env = {"MODELPORT_DATABASE_URL": url, "MODELPORT_BLOB_DIR": str(tmp / "blobs")}
    home = tmp / "home"
    registry = Registry(Settings(home=home, database_url=url, blob_dir=tmp / "blobs",
                                 user="tester"))  # fmt: skip
    versions = fill(registry, tmp / "models")
    args = ("--poll-interval", str(POLL))
    replicas = [serve(tmp / f"home{i}", *args, env=env, log=tmp / f"r{i}.log") for i in range(3)]
    try:
        with balancer(tmp, [r.port for r in replicas]) as url:
            yield {"registry": registry, "versions": versions, "replicas": replicas, "env": env,
                   "url": url, "tmp": tmp, "args": args}  # fmt: skip
    finally:
        for replica in replicas:
            replica.stop()
        registry.close()
        postgres.drop_database(database)


def _served(base: str) -> list[int]:
    return httpx.get(f"{base}/v2/models/digits", timeout=5).json()["versions"]


def test_an_alias_move_reaches_every_replica(cluster) -> None:
    reg, replicas = cluster["registry"], cluster["replicas"]
    good = cluster["versions"]["good"]
    assert {tuple(_served(r.url)) for r in replicas} == {("1",)}
    moved_at = time.monotonic()
    reg.set_alias("digits", "production", good)
    seen = {}
    for replica in replicas:
        _wait(lambda r=replica: _served(r.url) == [str(good)], f"{replica.url} to follow")
        seen[replica.port] = time.monotonic() - moved_at
    print(f"alias move seen by the replicas after {sorted(seen.values())} s (poll {POLL} s)")
    reg.set_alias("digits", "production", 1)
    for replica in replicas:
        _wait(lambda r=replica: _served(r.url) == ["1"], f"{replica.url} to follow back")


def _half_sent_request(port: int) -> tuple[socket.socket, bytes]:
    """A V2 request whose headers are in and whose body is only half sent (in flight), and the
    rest of its body."""
    body = httpx.Request("POST", "http://x", json={"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [1, 4],
        "data": inputs(1)[0].tolist()}]}).read()  # fmt: skip
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    sock.sendall(head + body[: len(body) // 2])
    return sock, body[len(body) // 2 :]


def _taken_in(port: int, sock: socket.socket) -> bool:
    """Whether the server listening on ``port`` has accepted ``sock``'s connection and read all
    that was sent on it (its side of the connection has a file and an empty receive queue), as
    /proc/net/tcp tells: with the headers read, the request is in flight."""
    client = sock.getsockname()[1]
    with open("/proc/net/tcp") as table:
        for row in table.read().splitlines()[1:]:
            fields = row.split()
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
            if (local, remote) == (port, client):
                return int(fields[9]) != 0 and int(fields[4].split(":")[1], 16) == 0
    return False


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_stops_accepting_and_finishes_the_request_in_flight(cluster) -> None:
    replica = serve(cluster["tmp"] / "home-drain", *cluster["args"], env=cluster["env"],
                    log=cluster["tmp"] / "drain.log")  # fmt: skip
    sock, rest = _half_sent_request(replica.port)
    _wait(lambda: _taken_in(replica.port, sock), "the server to read the request's headers")
    replica.process.terminate()
    _wait(lambda: _refused(replica.port), "the server to stop accepting", limit=10)
    assert replica.process.poll() is None  # still finishing the request in flight
    sock.sendall(rest)
    chunks = []
    while chunk := sock.recv(65536):  # the server closes the connection after the reply
        chunks.append(chunk)
    sock.close()
    reply = b"".join(chunks).decode()
    assert reply.startswith("HTTP/1.1 200"), reply
    assert '"probabilities"' in reply and "connection: close" in reply.lower()
    assert replica.process.wait(timeout=30) == 0


def test_a_rolling_restart_under_load_fails_no_request(cluster) -> None:
    replicas = cluster["replicas"]
    with Load([cluster["url"]], rate=80, threads=4, limit_seconds=90) as load:
        _wait(lambda: load.outcomes["200"] >= 20, "the load to run")
        for i, old in enumerate(list(replicas)):
            assert old.stop() == 0
            log = cluster["tmp"] / f"r{i}-restarted.log"
            replicas[i] = serve(cluster["tmp"] / f"home{i}", *cluster["args"], env=cluster["env"],
                                log=log, port=old.port)  # fmt: skip
            # nginx takes the replica back after fail_timeout; only then is the next one stopped
            _wait(lambda r=replicas[i]: requests_served(r.url) > 0, f"nginx to send to {log.name}")
        _wait(lambda: load.sent > 200, "200 requests")
    assert load.failed == 0, load.errors[:5]
    print(f"rolling restart of 3 replicas: {load.sent} requests, {load.failed} failed")
