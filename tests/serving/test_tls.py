"""TLS on both ports with real clients (tritonclient HTTPS and gRPC, curl); bad certificates
stop the server at start-up with one line. Certificates are made here with cryptography."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke_cli, make_mlp_onnx
from tests.serving.launch import Launched, launched

X = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
NOW = dt.datetime.now(dt.UTC)


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, certificate=None, key=None) -> Path:
    from cryptography.hazmat.primitives import serialization

    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return path


def issue(name: str, key, issuer=None, issuer_key=None, ca=False, days=(-1, 30), server=True):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if not ca and server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ), critical=False)  # fmt: skip
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = issue("modelport test CA", ca_key, ca=True, days=(-1, 365))
    return {
        "ca": _write(tmp / "ca.pem", ca),
        "cert": _write(tmp / "server.pem", issue("localhost", server_key, ca, ca_key)),
        "key": _write(tmp / "server.key", key=server_key),
        "client_cert": _write(
            tmp / "client.pem", issue("client", client_key, ca, ca_key, server=False)
        ),
        "client_key": _write(tmp / "client.key", key=client_key),
        "expired": _write(
            tmp / "expired.pem", issue("localhost", server_key, ca, ca_key, days=(-30, -1))
        ),
        "other_key": _write(tmp / "other.key", key=other_key),
        "models": make_mlp_onnx(tmp / "mlp.onnx").parent,
    }


@pytest.fixture(scope="module")
def model_dir(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls-model") / "mlp"
    folder.mkdir()
    shutil.copy(pki["models"] / "mlp.onnx", folder / "model.onnx")
    return folder


def client_context(pki: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if with_cert:
        context.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    return context


@pytest.fixture(scope="module")
def tls_server(pki, model_dir, tmp_path_factory) -> Iterator[Launched]:
    """A repository of mlp (ONNX) and chat (SmolLM2 GGUF) behind TLS."""
    from tests.generation.conftest import smollm2_path

    repo = tmp_path_factory.mktemp("tls-repo")
    (repo / "mlp" / "1").mkdir(parents=True)
    shutil.copy(model_dir / "model.onnx", repo / "mlp" / "1" / "model.onnx")
    (repo / "chat" / "1").mkdir(parents=True)
    (repo / "chat" / "1" / "model.gguf").symlink_to(smollm2_path())
    args = ["--model-repository", str(repo), "--tls-cert", str(pki["cert"]),
            "--tls-key", str(pki["key"]), "--slots", "1", "--context", "256",
            "--intra-op-threads", "1"]  # fmt: skip
    home = tmp_path_factory.mktemp("home")
    with launched(args, home, tls=client_context(pki, False), models=("mlp",)) as server:
        yield server


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "--max-time", "10", *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def test_https_and_grpc_tls_with_real_clients(tls_server: Launched, pki) -> None:
    import gevent.ssl
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    def context():
        return gevent.ssl.create_default_context(cafile=str(pki["ca"]))

    http = httpclient.InferenceServerClient(tls_server.http, ssl=True,
                                            ssl_context_factory=context)  # fmt: skip
    tensor = httpclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(X)
    over_https = http.infer("mlp", [tensor]).as_numpy("probabilities")
    http.close()
    grpc = grpcclient.InferenceServerClient(tls_server.grpc, ssl=True,
                                            root_certificates=str(pki["ca"]))  # fmt: skip
    g_tensor = grpcclient.InferInput("input", [1, 4], "FP32")
    g_tensor.set_data_from_numpy(X)
    over_grpc = grpc.infer("mlp", [g_tensor]).as_numpy("probabilities")
    grpc.close()
    assert over_https.shape == (1, 3)
    np.testing.assert_array_equal(over_https, over_grpc)

    done = curl("--cacert", str(pki["ca"]), f"https://{tls_server.http}/v2/health/ready", "-w",
                "%{http_code}")  # fmt: skip
    assert done.stdout.endswith("200"), done.stderr
    plain = curl(f"http://{tls_server.http}/v2/health/ready")  # plain HTTP on the TLS port
    assert plain.returncode != 0
    untrusted = curl(f"https://{tls_server.http}/v2/health/ready")  # no CA: not trusted
    assert untrusted.returncode == 60, untrusted.stderr


def test_openai_client_over_https(tls_server: Launched, pki) -> None:
    import httpx
    from openai import OpenAI

    with httpx.Client(verify=client_context(pki, False)) as http:
        client = OpenAI(base_url=f"https://localhost:{tls_server.http.rsplit(':', 1)[1]}/v1",
                        api_key="unused", http_client=http, max_retries=0)  # fmt: skip
        reply = client.chat.completions.create(
            model="chat", max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
        )
    assert reply.model == "chat" and reply.usage.completion_tokens >= 1


def test_client_certificates_required(pki, model_dir, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    args = ["--model-dir", str(model_dir), "--tls-cert", str(pki["cert"]),
            "--tls-key", str(pki["key"]), "--tls-client-ca", str(pki["ca"])]  # fmt: skip
    with launched(args, tmp_path, tls=client_context(pki, True)) as server:
        url = f"https://{server.http}/v2/health/ready"
        refused = curl("--cacert", str(pki["ca"]), url)
        assert refused.returncode != 0  # no client certificate: the handshake fails
        allowed = curl("--cacert", str(pki["ca"]), "--cert", str(pki["client_cert"]),
                       "--key", str(pki["client_key"]), url, "-w", "%{http_code}")  # fmt: skip
        assert allowed.stdout.endswith("200"), allowed.stderr

        anonymous = grpcclient.InferenceServerClient(server.grpc, ssl=True,
                                                     root_certificates=str(pki["ca"]))  # fmt: skip
        with pytest.raises(InferenceServerException):
            anonymous.is_server_ready(client_timeout=10)
        anonymous.close()
        known = grpcclient.InferenceServerClient(
            server.grpc, ssl=True, root_certificates=str(pki["ca"]),
            private_key=str(pki["client_key"]), certificate_chain=str(pki["client_cert"]),
        )  # fmt: skip
        assert known.is_server_ready(client_timeout=10)
        known.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tls-cert", "{expired}", "--tls-key", "{key}"], "expired.pem expired on"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "other.key is not the key of"),
        (["--tls-cert", "{missing}", "--tls-key", "{key}"], "cannot read it: No such file"),
        (["--tls-cert", "{key}", "--tls-key", "{key}"], "server.key is not a PEM certificate"),
        (["--tls-cert", "{cert}"], "TLS needs both --tls-cert and --tls-key"),
        (["--tls-client-ca", "{ca}"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{key}"],
         "server.key is not a PEM certificate"),
    ],
)  # fmt: skip
def test_bad_certificates_stop_the_start(monkeypatch, capsys, pki, tmp_path, options, message):
    paths = {**{k: str(v) for k, v in pki.items()}, "missing": str(tmp_path / "missing.pem")}
    args = [option.format(**paths) for option in options]
    code, out, err = invoke_cli(monkeypatch, capsys, "--home", str(tmp_path), "serve", *args)
    text = out + err
    assert code != 0 and message in text, text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
