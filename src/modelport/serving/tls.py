"""TLS for the HTTP and gRPC ports: one certificate and key, optionally client certificates.

    tls = Tls.load("server.pem", "server.key", client_ca="clients-ca.pem")   # checked at start
    tls.context()              # ssl.SSLContext for uvicorn (HTTPS)
    tls.grpc_credentials()     # grpc.ServerCredentials for the gRPC port

Everything is checked before a model loads, each problem a one-line ``InvalidInput``: a file
that cannot be read, a certificate or key that is not PEM, a certificate that has expired or is
not valid yet, a key that does not belong to the certificate, a client CA that is not a
certificate. With ``client_ca`` both ports refuse clients that present no certificate signed by
it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput


@dataclass(frozen=True)
class Tls:
    cert: bytes  # PEM chain, server certificate first
    key: bytes
    client_ca: bytes | None = None
    files: tuple[str, str, str | None] = ("", "", None)

    @classmethod
    def load(cls, cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> Tls:
        chain, private = _read(cert, "--tls-cert"), _read(key, "--tls-key")
        ca = _read(client_ca, "--tls-client-ca") if client_ca is not None else None
        certificate = _certificate(chain, cert)
        _check_dates(certificate, cert)
        _check_pair(certificate, private, key, cert)
        if ca is not None:
            _check_dates(_certificate(ca, client_ca), client_ca)
        tls = cls(chain, private, ca, (str(cert), str(key), None if ca is None else str(client_ca)))
        tls.context()  # what OpenSSL itself refuses, now rather than at the first connection
        return tls

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert, key, _ = self.files
        try:
            context.load_cert_chain(cert, key)
            if self.client_ca is not None:
                context.load_verify_locations(cadata=self.client_ca.decode("ascii", "replace"))
                context.verify_mode = ssl.CERT_REQUIRED
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise InvalidInput(f"TLS: {cert} and {key} cannot be used: {_reason(exc)}") from None
        context.set_alpn_protocols(["http/1.1"])
        return context

    def grpc_credentials(self) -> Any:
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )  # fmt: skip


def _read(path: str | Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None


def _certificate(pem: bytes, path: Any) -> Any:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidInput(f"TLS: {path} is not a PEM certificate") from None


def _check_dates(certificate: Any, path: Any) -> None:
    now = datetime.now(UTC)
    if certificate.not_valid_after_utc < now:
        raise InvalidInput(
            f"TLS: the certificate {path} expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
        )
    if certificate.not_valid_before_utc > now:
        raise InvalidInput(
            f"TLS: the certificate {path} is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def _check_pair(certificate: Any, pem: bytes, key_path: Any, cert_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"TLS: {key_path} is not an unencrypted PEM key ({exc})") from None
    form = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*form) != certificate.public_key().public_bytes(*form):
        raise InvalidInput(f"TLS: the key {key_path} is not the key of {cert_path}")


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)


def tls_options(cert: str | None, key: str | None, client_ca: str | None) -> Tls | None:
    """What ``--tls-cert`` / ``--tls-key`` / ``--tls-client-ca`` ask for; None: plain text."""
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidInput("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise InvalidInput("TLS needs both --tls-cert and --tls-key")
    return Tls.load(cert, key, client_ca)
