"""What can go wrong when delivering a notification, and whether to try again.

    DeliveryError
     ├── RetryableError   receiver down, timeout, 5xx, 429, robot rate limit: retry with backoff
     └── PermanentError   4xx, malformed request, receiver not configured: never retried, kept for the operator
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A notification was not accepted by its receiver."""


class RetryableError(DeliveryError):
    """Try again later; `retry_after_s` is the receiver's own hint (Retry-After) when it gave one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(DeliveryError):
    """The receiver refused this message for good; retrying would only repeat the refusal."""


class AlertsError(ValueError):
    """An operator request cannot be carried out (unknown alert, bad matcher, bad time); says why."""
