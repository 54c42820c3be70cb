"""`InfluxConfig`: the `[influxdb]` section of config.toml (where and how storage writes)."""

from __future__ import annotations

from pydantic import Field

from core.config import Section
from core.secrets import SecretStr, SecretUrl

INFLUXDB_PASSWORD_ENV = "URBANSENSE_INFLUXDB_PASSWORD"
INFLUXDB_TOKEN_ENV = "URBANSENSE_INFLUXDB_TOKEN"


class InfluxConfig(Section):
    url: SecretUrl = Field(SecretUrl("http://127.0.0.1:8086"),
                           description="InfluxDB base URL; the v1 API (/write, /query) on 1.x, 2.x or 3.x")
    database: str = Field("urbansense", min_length=1, description=("database (1.x), or the DBRP-mapped database "
                                                                   "name on 2.x"))
    username: str = Field("", description="v1 user, empty when auth is off or a token is used")
    password: SecretStr = Field(SecretStr(""), description="v1 password (prefer URBANSENSE_INFLUXDB_PASSWORD)")
    token: SecretStr = Field(SecretStr(""), description="v2/v3 token (prefer URBANSENSE_INFLUXDB_TOKEN)")
    retention_policy: str = Field("", description="retention policy to write into, empty for the database default")
    create_database: bool = Field(True, description="CREATE DATABASE on start when missing (1.x only)")
    batch_size: int = Field(5000, ge=1, description="lines per write request")
    flush_interval_s: float = Field(0.2, gt=0, description=("the longest a reading waits before it is written, "
                                                            "seconds"))
    max_batches_in_flight: int = Field(2, ge=1, description=("writes under way at once before the pipeline applies "
                                                             "backpressure"))
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one write, seconds")
    ca_file: str = Field("", description="PEM CA certificate(s) for an https:// url; \"\" = the system's CAs")
