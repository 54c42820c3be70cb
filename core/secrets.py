"""Secret-bearing config values: shown redacted everywhere, read only where they are used.

`SecretStr` (pydantic) holds tokens, passwords, keys and header values; `SecretUrl` holds a
URL that may carry credentials (user:password@, or a key in its query): `str()`, `repr()`,
`model_dump()` and log lines show it with the password and every query value replaced by
`***`; `.get_secret_value()` is the real URL, for the HTTP client only.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Secret, SecretStr

__all__ = ["MASK", "SecretStr", "SecretUrl", "redact_url", "reveal"]

MASK = "***"


def redact_url(url: str) -> str:
    """`url` with its password and query values masked: `http://u:***@host/p?key=***`.

    Anything that does not parse as a URL is masked whole.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if not parts.netloc and "@" in url:
        return MASK
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None:
        netloc = f"{parts.username}{':' + MASK if parts.password is not None else ''}@{netloc}"
    query = urlencode([(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class SecretUrl(Secret[str]):
    """A URL whose credentials never show: see `redact_url`."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())

    def __str__(self) -> str:
        return self._display()


def reveal(value: SecretStr | SecretUrl | str | None) -> str:
    """The real value of a secret (or a plain string), for the one place that sends it."""
    if value is None:
        return ""
    if isinstance(value, (SecretStr, Secret)):
        return value.get_secret_value()
    return value
