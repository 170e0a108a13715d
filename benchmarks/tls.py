"""The throughput cost of TLS: the same perf_analyzer load over HTTP and HTTPS, gRPC and gRPC
with TLS, against two `modelport serve` processes, one plain and one with ``--tls-cert``.

    python benchmarks/tls.py [--requests 2000] [--rounds 3] [--markdown]

Both servers run at once and each load alternates between them (``--rounds`` times, medians
reported), so the noise of a shared machine falls on both alike. The model is the tutorial MLP
served from a one-model folder (``--model-dir``); the certificate is a throwaway ECDSA P-256 one
made here for 127.0.0.1. perf_analyzer keeps its connections open, so the figures price
encrypting each request and reply, not handshakes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import subprocess
import sys
import tempfile
from pathlib import Path

from perf_analyzer import perf_analyzer, print_table, run

from serving import free_port, stop, tutorial_mlp, wait_ready

CONCURRENCY = (1, 8)


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def start(work: Path, tls: bool) -> tuple[subprocess.Popen, int, int]:
    cert, key = work / "server.pem", work / "server.key"
    http, grpc = free_port(), free_port()
    command = [sys.executable, "-m", "modelport", "--home", str(work / "home"), "serve",
               "--model-dir", str(work / "mlp"), "--http-port", str(http), "--grpc-port",
               str(grpc), "--intra-op-threads", "1"]  # fmt: skip
    if tls:
        command += ["--tls-cert", str(cert), "--tls-key", str(key)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    if tls:
        _wait(http, server, cert)
    else:
        wait_ready(f"http://127.0.0.1:{http}/v2/health/ready", server)
    return server, http, grpc


def target(tls: bool, protocol: str, port: int, cert: Path) -> tuple[str, tuple[str, ...]]:
    """perf_analyzer's URL and TLS options for one server."""
    if not tls:
        return f"127.0.0.1:{port}", ()
    if protocol == "http":
        return f"https://127.0.0.1:{port}", ("--ssl-https-ca-certificates-file", str(cert))
    return f"127.0.0.1:{port}", ("--ssl-grpc-use-ssl", "--ssl-grpc-root-certifications-file",
                                 str(cert))  # fmt: skip


def measure(work: Path, requests: int, rounds: int) -> list[dict]:
    """Both servers up at once; each load runs on the plain one then the TLS one, ``rounds``
    times, so the machine's noise falls on both alike. Medians of the rounds."""
    binary, env = perf_analyzer()
    servers = [start(work, False), start(work, True)]
    try:
        rows = []
        for protocol in ("http", "grpc"):
            for concurrency in CONCURRENCY:
                found: dict[bool, list[dict]] = {False: [], True: []}
                for _ in range(rounds):
                    for tls, (_, http, grpc) in zip((False, True), servers, strict=True):
                        port = http if protocol == "http" else grpc
                        url, extra = target(tls, protocol, port, work / "server.pem")
                        found[tls].append(run(binary, env, url, protocol, "mlp", concurrency,
                                              requests, work / "out.csv", extra))  # fmt: skip
                for tls, runs in found.items():
                    runs.sort(key=lambda r: r["throughput"])
                    rows.append({**runs[len(runs) // 2], "tls": tls})
        return rows
    finally:
        for server, _, _ in servers:
            stop(server)


def _wait(port: int, server: subprocess.Popen, cert: Path) -> None:
    import ssl
    import time
    import urllib.request

    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/health/ready", context=context)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the TLS server was not ready after 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per count window")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of plain and TLS")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "mlp").mkdir()
        tutorial_mlp(work / "mlp" / "model.onnx")
        certificate(work)
        rows = measure(work, args.requests, args.rounds)
    plain = {(r["protocol"], r["concurrency"]): r["throughput"] for r in rows if not r["tls"]}
    head = ["transport", "concurrency", "infer/s", "vs plain", "p50 ms", "p99 ms"]
    cells = []
    for r in sorted(rows, key=lambda r: (r["protocol"], r["concurrency"], r["tls"])):
        name = {
            ("http", False): "HTTP",
            ("http", True): "HTTPS",
            ("grpc", False): "gRPC",
            ("grpc", True): "gRPC + TLS",
        }[r["protocol"], r["tls"]]
        ratio = r["throughput"] / plain[r["protocol"], r["concurrency"]]
        cells.append([name, str(r["concurrency"]), f"{r['throughput']:.0f}", f"{ratio:.2f}",
                      f"{r['p50']:.2f}", f"{r['p99']:.2f}"])  # fmt: skip
    print_table(head, cells, args.markdown, "TLS cost, perf_analyzer against modelport serve")


if __name__ == "__main__":
    main()
