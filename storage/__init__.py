"""Storage: the only code that talks to InfluxDB (line protocol, batching, InfluxQL) plus the dead-letter store."""

from core.reading import Reading
from storage.deadletter import DeadLetter, DeadLetterStore
from storage.errors import (
    PartialWriteError,
    PayloadTooLarge,
    PermanentWriteError,
    QueryError,
    RequestRefused,
    RetryableWriteError,
    StorageError,
    TransientError,
)
from storage.influx import InfluxClient
from storage.lineprotocol import encode_point, encode_reading
from storage.writer import BatchWriter, WriterStats

__all__ = [
    "BatchWriter",
    "DeadLetter",
    "DeadLetterStore",
    "InfluxClient",
    "PartialWriteError",
    "PayloadTooLarge",
    "PermanentWriteError",
    "QueryError",
    "Reading",
    "RequestRefused",
    "RetryableWriteError",
    "StorageError",
    "TransientError",
    "WriterStats",
    "encode_point",
    "encode_reading",
]
