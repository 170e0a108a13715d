"""Release files by content address with HTTP ranges, and downloads that misbehave."""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading

import pytest

from modelport.edge.client import FleetClient
from modelport.edge.fleet.waves import Wave, decide, parse_waves, wave_members
from modelport.edge.trust import Rejected
from modelport.errors import InvalidInput, PayloadTooLarge
from tests.edge.conftest import make_bundle
from tests.edge.fleetkit import fleet_server


def raw_server(reply: bytes, forever: bool = False):
    """A socket server answering every connection with ``reply`` (then endless bytes)."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                conn.recv(65536)
                conn.sendall(reply)
                while forever:
                    conn.sendall(b"\0" * 65536)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_download_that_never_ends_is_cut_at_its_signed_size(tmp_path):
    sock, url = raw_server(b"HTTP/1.1 200 OK\r\n\r\n", forever=True)
    client = FleetClient(url, "dev:secret")
    with pytest.raises(PayloadTooLarge, match="passed 100000 bytes"):
        client.download("ab" * 32, 100_000, tmp_path / "w.bin")
    assert client.received <= 100_000 and not (tmp_path / "w.bin").exists()
    sock.close()


def test_a_download_that_claims_more_than_its_size_is_refused(tmp_path):
    sock, url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n")
    with pytest.raises(PayloadTooLarge, match="999999 bytes of a 10-byte file"):
        FleetClient(url, "dev:secret").download("ab" * 32, 10, tmp_path / "w.bin")
    sock.close()


def test_a_truncated_download_is_refused_after_resuming(tmp_path):
    body = b"x" * 500
    sock, url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + body)
    with pytest.raises(Rejected) as caught:
        FleetClient(url, "dev:secret").download(
            hashlib.sha256(b"x" * 900).hexdigest(), 900, tmp_path / "w.bin"
        )
    assert caught.value.reason == "truncated"
    sock.close()


def test_blobs_are_served_by_content_address_with_ranges(store, tmp_path):
    bundle = make_bundle(store, tmp_path, seed=1)
    with fleet_server(tmp_path / "home") as (fleet, url):
        release = fleet.add_release(bundle.path)
        device, secret = fleet.enroll(
            fleet.create_token("t"), {"id": "d1", "hardware": "x86", "tags": ["t"]}
        )
        entry = next(f for f in release["files"] if f["path"] == "model/w1.bin")
        host, port = url.removeprefix("http://").split(":")
        headers = {"Authorization": f"Bearer {device}:{secret}"}

        def get(path: str, **extra: str) -> tuple[int, bytes, http.client.HTTPResponse]:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", path, headers={**headers, **extra})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            return response.status, body, response

        status, whole, _ = get(f"/v1/blobs/{entry['sha256']}")
        assert status == 200 and hashlib.sha256(whole).hexdigest() == entry["sha256"]
        status, part, response = get(f"/v1/blobs/{entry['sha256']}", Range="bytes=100-")
        assert status == 206 and part == whole[100:]
        assert response.getheader("content-range") == f"bytes 100-{len(whole) - 1}/{len(whole)}"
        status, part, _ = get(f"/v1/blobs/{entry['sha256']}", Range="bytes=-10")
        assert status == 206 and part == whole[-10:]
        status, _, response = get(f"/v1/blobs/{entry['sha256']}", Range=f"bytes={len(whole)}-")
        assert status == 416 and response.getheader("content-range") == f"bytes */{len(whole)}"
        assert get(f"/v1/blobs/{entry['sha256']}", Range="lines=1-2")[0] == 400
        assert get("/v1/blobs/" + "0" * 64)[0] == 404  # not a release file
        assert get("/v1/blobs/nothex")[0] == 400
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", f"/v1/blobs/{entry['sha256']}")
        assert conn.getresponse().status == 401  # devices only
        conn.close()


def test_waves_split_a_group_and_decide_in_order():
    assert parse_waves("10,50,100") == [10, 50, 100]
    for bad in ("10,5,100", "10,50", "abc", "0,100"):
        with pytest.raises(InvalidInput):
            parse_waves(bad)
    devices = [f"d{i}" for i in range(20)]
    waves = wave_members(devices, [10, 50, 100], salt="x")
    assert [len(w) for w in waves] == [2, 8, 10] and sorted(sum(waves, [])) == sorted(devices)
    assert wave_members(devices, [10, 50, 100], salt="x") == waves  # stable
    assert decide(Wave(0, 2, 1, 1, 0), 0, 60, 0.2, False).action == "halt"
    assert decide(Wave(0, 2, 2, 0, 0), 10, 60, 0.2, False).action == "wait"
    assert decide(Wave(0, 2, 1, 0, 1), 99, 60, 0.2, False).action == "wait"
    assert decide(Wave(0, 2, 2, 0, 0), 61, 60, 0.2, False).action == "next"
    assert decide(Wave(2, 10, 9, 1, 0), 61, 60, 0.2, True).action == "done"
