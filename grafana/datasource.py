"""The InfluxDB (InfluxQL) datasource: as a provisioning file and as a `/api/datasources` request body.

In the provisioning file credentials are Grafana environment-variable references (`${VAR}`),
expanded by Grafana when it reads the file, so no secret is ever written to disk by urbansense.
Through the HTTP API a secret has to be sent as its value; it goes in `secureJsonData`, which
Grafana stores encrypted and never returns.
"""

from __future__ import annotations

from typing import Any

from core.secrets import reveal
from grafana.dashboards import DATASOURCE_UID
from storage.config import INFLUXDB_PASSWORD_ENV, INFLUXDB_TOKEN_ENV, InfluxConfig

DATASOURCE_NAME = "urbansense InfluxDB"
PASSWORD_ENV = INFLUXDB_PASSWORD_ENV
TOKEN_ENV = INFLUXDB_TOKEN_ENV


def _json_data(ic: InfluxConfig, with_token: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"dbName": ic.database, "httpMode": "POST", "version": "InfluxQL"}
    if ic.retention_policy:
        data["retentionPolicy"] = ic.retention_policy
    if with_token:
        data["httpHeaderName1"] = "Authorization"
    return data


def datasource_body(ic: InfluxConfig) -> dict[str, Any]:
    """Request body for POST /api/datasources and PUT /api/datasources/uid/:uid (secrets as their values)."""
    body: dict[str, Any] = {"uid": DATASOURCE_UID, "name": DATASOURCE_NAME, "type": "influxdb", "access": "proxy",
                            "url": reveal(ic.url), "isDefault": False, "jsonData": _json_data(ic, bool(ic.token))}
    secure: dict[str, str] = {}
    if ic.username:
        body["user"] = ic.username
        secure["password"] = reveal(ic.password)
    if ic.token:
        secure["httpHeaderValue1"] = f"Token {reveal(ic.token)}"
    if secure:
        body["secureJsonData"] = secure
    return body


def datasource_provisioning(ic: InfluxConfig, *, token: bool | None = None) -> dict[str, Any]:
    """`provisioning/datasources/urbansense.yaml`; secrets as `${VAR}`, never their values.

    A password reference is written when a v1 user is configured, a token header when a token
    is configured (or `token=True`).
    """
    use_token = bool(ic.token) if token is None else token
    ds: dict[str, Any] = {"name": DATASOURCE_NAME, "uid": DATASOURCE_UID, "type": "influxdb", "access": "proxy",
                          "url": reveal(ic.url), "isDefault": False, "editable": False,
                          "jsonData": _json_data(ic, use_token)}
    secure: dict[str, str] = {}
    if ic.username:
        ds["user"] = ic.username
        secure["password"] = f"${{{PASSWORD_ENV}}}"
    if use_token:
        secure["httpHeaderValue1"] = f"Token ${{{TOKEN_ENV}}}"
    if secure:
        ds["secureJsonData"] = secure
    return {"apiVersion": 1, "datasources": [ds]}
