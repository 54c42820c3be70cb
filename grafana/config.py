"""`GrafanaConfig`: the `[grafana]` section of config.toml, and what grafana's tools need of the whole config."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field

from core.config import Section
from core.secrets import SecretStr, SecretUrl
from storage.config import InfluxConfig

GRAFANA_TOKEN_ENV = "URBANSENSE_GRAFANA_TOKEN"


class GrafanaConfig(Section):
    url: SecretUrl = Field(SecretUrl("http://127.0.0.1:3000"),
                           description="Grafana base URL for `urbansense grafana push`")
    token: SecretStr = Field(SecretStr(""),
                             description="Grafana service-account token (prefer URBANSENSE_GRAFANA_TOKEN)")
    language: Literal["zh", "en"] = Field("zh", description=("dashboard and panel titles: zh (Chinese) or en "
                                                             "(English)"))
    folder: str = Field("UrbanSense", min_length=1, description="Grafana folder the dashboards go into")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one Grafana API call, seconds")


class GrafanaSettings(Protocol):
    """The two sections `export_tree` and `push_all` read (the service's `Config` has both)."""

    @property
    def grafana(self) -> GrafanaConfig: ...

    @property
    def influxdb(self) -> InfluxConfig: ...
