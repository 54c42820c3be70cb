"""Every error storage raises, arranged by what the caller should do next.

    StorageError
    ├── TransientError ............ InfluxDB unreachable, timed out, 5xx, 429: try again later
    │   └── RetryableWriteError ... a write failed so; it may or may not have landed, and
    │                               rewriting it is safe (same series and time overwrite)
    ├── RequestRefused ............ 401, 403, 404: credentials, permissions or a missing
    │                               database; the data is fine, the configuration is not
    ├── PermanentWriteError ....... other 4xx: InfluxDB refused points; never resend them as is
    │   ├── PartialWriteError ..... 1.x wrote the good points and dropped `dropped` bad ones
    │   └── PayloadTooLarge ....... 413: split the batch and send the halves
    └── QueryError ................ InfluxQL refused (syntax, unknown database, ...)

`retry_after` (seconds) comes from a Retry-After header where the server sent one.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage error."""


class TransientError(StorageError):
    """The server could not be reached or asked us to come back later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableWriteError(TransientError):
    """A write that failed for a transient reason; retry it with backoff."""


class RequestRefused(StorageError):
    """The server refuses the request itself (bad credentials, no permission, no such database)."""

    def __init__(self, message: str, *, status: int, text: str) -> None:
        super().__init__(message)
        self.status = status
        self.text = text


class PermanentWriteError(StorageError):
    """InfluxDB refused points in the batch; `text` is its error message, which names what was wrong."""

    def __init__(self, message: str, *, status: int, text: str,
                 line_errors: list[tuple[int | None, str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.text = text
        self.line_errors = line_errors or []
        """(1-based line number, original line, error) when the server lists rejected lines (3.x)."""


class PartialWriteError(PermanentWriteError):
    """The good points were written; `dropped` points were not (None when the server did not say)."""

    def __init__(self, message: str, *, status: int, text: str, dropped: int | None,
                 line_errors: list[tuple[int | None, str, str]] | None = None) -> None:
        super().__init__(message, status=status, text=text, line_errors=line_errors)
        self.dropped = dropped


class PayloadTooLarge(PermanentWriteError):
    """413: the body exceeds the server's limit; nothing was written."""


class QueryError(StorageError):
    """An InfluxQL statement failed; `statement_id` says which (None for the whole request)."""

    def __init__(self, message: str, *, statement_id: int | None = None) -> None:
        super().__init__(message)
        self.statement_id = statement_id
