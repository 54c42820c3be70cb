"""`InfluxConfig`: the `[influxdb]` section of config.toml (where and how storage writes)."""

from __future__ import annotations

from pydantic import Field

from core.config import Section
from core.secrets import SecretStr, SecretUrl

INFLUXDB_PASSWORD_ENV = "URBANSENSE_INFLUXDB_PASSWORD"
INFLUXDB_TOKEN_ENV = "URBANSENSE_INFLUXDB_TOKEN"


class InfluxConfig(Section):
    url: SecretUrl = Field(SecretUrl("http://127.0.0.1:8086"),
                           description="InfluxDB base URL (v1 API); shown with credentials masked")
    database: str = Field("urbansense", min_length=1, description="database (1.x) or DBRP-mapped bucket")
    username: str = Field("", description="v1 user name")
    password: SecretStr = Field(SecretStr(""), description="v1 password (or env URBANSENSE_INFLUXDB_PASSWORD)")
    token: SecretStr = Field(SecretStr(""), description="v2/v3 token (or env URBANSENSE_INFLUXDB_TOKEN)")
    retention_policy: str = Field("", description="retention policy, empty for the default")
    create_database: bool = Field(True, description="create the database on start (1.x)")
    batch_size: int = Field(5000, ge=1, description="lines per write")
    flush_interval_s: float = Field(0.2, gt=0, description="longest a line waits before a write")
    max_batches_in_flight: int = Field(2, ge=1, description="writes under way before backpressure")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per write")
    ca_file: str = Field("", description="PEM CA certificate(s) for an https:// url; empty = the system's CAs")
