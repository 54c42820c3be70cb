"""TLS client contexts for every connection urbansense makes (MQTT, InfluxDB, notifiers): verified, TLS 1.2+.

The server's certificate is always checked against the CA file (or the system's CAs when
none is given) and its host name against the address connected to; there is no switch to
turn either off. A client certificate and key are sent when configured (mutual TLS).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

__all__ = ["TlsError", "client_context", "handshake_problem", "server_context"]


class TlsError(ValueError):
    """A CA, certificate or key file cannot be used; the message names the setting and the file."""


def client_context(*, ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                   key_file: str | Path | None = None, setting: str = "tls") -> ssl.SSLContext:
    """A client context: certificates verified (against `ca_file` or the system CAs), host names checked,
    TLS 1.2 or later, and the client certificate `cert_file` (+ `key_file`) when given.

    Raises `TlsError` naming `setting` (e.g. `mqtt`) when a file is missing or not PEM.
    """
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{setting}.ca_file {ca_file}: cannot load the CA certificates: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file:
        try:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"{setting}.cert_file {cert_file} / key_file {key_file or '-'}: "
                           f"cannot load the client certificate and key: {exc}") from None
    elif key_file:
        raise TlsError(f"{setting}.key_file is set without {setting}.cert_file")
    return ctx


def server_context(cert_file: str | Path, key_file: str | Path | None = None, *,
                   setting: str = "tls") -> ssl.SSLContext:
    """A server context (TLS 1.2 or later) presenting `cert_file` (+ `key_file`); `TlsError` names `setting`."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{setting}_cert_file {cert_file} / key_file {key_file or '-'}: "
                       f"cannot load the certificate and key: {exc}") from None
    return ctx


def handshake_problem(host: str, port: int, ctx: ssl.SSLContext, timeout: float = 5.0) -> str | None:
    """Why a TLS handshake with `host:port` fails (certificate, host name, protocol), or None if it succeeds.

    Used after a failed connect to say *why* in the log: MQTT clients only report "cannot connect".
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"the broker's certificate was refused: {exc.verify_message or exc}"
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        return f"cannot connect: {exc}"
