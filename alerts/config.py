"""`AlertsConfig`: the `[alerts]` section of config.toml (receivers, routes, repeats, inhibition, outbox).

See `alerts/config.example.toml` for a commented example of every receiver type.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.secrets import SecretStr, SecretUrl

SeverityName = Literal["info", "warning", "critical"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Http(_Model):
    headers: dict[str, SecretStr] = Field(default_factory=dict,
                                    description="extra HTTP headers on every request (e.g. Authorization)")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per request, seconds")
    ca_file: str = Field("", description="PEM CA certificate(s) for an https:// url; empty = the system's CAs")


class CasePlatformReceiver(_Http):
    type: Literal["case_platform"] = Field(description="opens, updates and closes city-management cases")
    url: SecretUrl = Field(description="base URL of the city's case platform API")
    open_path: str = Field("/cases", description="POST here to open a case; the reply's JSON carries its id")
    update_path: str = Field("/cases/{case_id}/updates",
                             description="POST here to update a case ({case_id}: platform id, else our case key)")
    close_path: str = Field("/cases/{case_id}/close", description="POST here to close a case on resolve")
    case_id_field: str = Field("case_id", description="field of the open reply's JSON that holds the case id")
    edition: Literal["2026", "cjt214"] = Field(
        "2026", description="classification edition: 2026 = GB/T 47678.5-2026 (5 digits), cjt214 = CJ/T 214 (4)")
    categories_file: str = Field("", description="case category table (TOML); empty = the shipped defaults")
    district_codes: dict[str, str] = Field(
        default_factory=dict, description="district name → 6-digit administrative division code (code prefix)")
    update_on_repeat: bool = Field(True, description="send an update to the open case at every repeat interval")
    source: str = Field("IoT sensor", description="the case's source (信息来源) field")

    @field_validator("district_codes")
    @classmethod
    def _six_digits(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}={c!r}" for k, c in v.items() if not (len(c) == 6 and c.isdigit())]
        if bad:
            raise ValueError(f"administrative division codes are 6 digits: {', '.join(bad)}")
        return v


class WebhookReceiver(_Http):
    type: Literal["webhook"] = Field(description="POSTs urbansense's own alert JSON (e.g. the emergency desk)")
    url: SecretUrl = Field(description="URL to POST to")


class AlertmanagerReceiver(_Http):
    type: Literal["alertmanager"] = Field(description="POSTs the Alertmanager webhook payload, version 4")
    url: SecretUrl = Field(description="URL to POST to")
    external_url: str = Field("", description="the payload's externalURL (where operators look alerts up)")


class WecomReceiver(_Model):
    type: Literal["wecom"] = Field(description="WeCom (企业微信) group robot, markdown messages")
    url: SecretUrl = Field(SecretUrl("https://qyapi.weixin.qq.com/cgi-bin/webhook/send"),
                           description="robot webhook endpoint")
    key: SecretStr = Field(min_length=1, description="the robot's key (the webhook URL's key= parameter)")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per request, seconds")
    ca_file: str = Field("", description="PEM CA certificate(s) for the endpoint; empty = the system's CAs")


class DingtalkReceiver(_Model):
    type: Literal["dingtalk"] = Field(description="DingTalk (钉钉) custom robot, markdown messages")
    url: SecretUrl = Field(SecretUrl("https://oapi.dingtalk.com/robot/send"),
                           description="robot webhook endpoint")
    access_token: SecretStr = Field(min_length=1, description="the robot's access_token")
    secret: SecretStr = Field(SecretStr(""),
                              description="signing secret (SEC…) when the robot uses 加签; empty = no signing")
    at_mobiles: list[str] = Field(default_factory=list, description="mobile numbers to @ in every message")
    at_all: bool = Field(False, description="@ everyone in the group")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per request, seconds")
    ca_file: str = Field("", description="PEM CA certificate(s) for the endpoint; empty = the system's CAs")


class MqttReceiver(_Model):
    type: Literal["mqtt"] = Field(description="publishes the alert JSON to an MQTT topic")
    host: str = Field("127.0.0.1", description="broker host")
    port: int = Field(1883, ge=1, le=65535, description="broker TCP port")
    topic: str = Field("urbansense/alerts/{route}/{device_id}",
                       description="topic template: {route} {rule_id} {device_id} {severity} {fingerprint}")
    qos: Literal[0, 1, 2] = Field(1, description="publish QoS; 1 = the broker acknowledges every message")
    retain: bool = Field(False, description="publish retained")
    username: str = Field("", description="broker user name, empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="broker password")
    client_id: str = Field("", description="MQTT client id; empty = generated")
    timeout_s: float = Field(10.0, gt=0, description="connect and publish timeout, seconds")
    tls: bool = Field(False, description="connect over TLS 1.2+ (certificate and host name always verified)")
    ca_file: str = Field("", description="PEM CA certificate(s) of the broker; empty = the system's CAs")
    cert_file: str = Field("", description="PEM client certificate for mutual TLS; empty = none")
    key_file: str = Field("", description="PEM private key of cert_file")


Receiver = Annotated[
    CasePlatformReceiver | WebhookReceiver | AlertmanagerReceiver | WecomReceiver | DingtalkReceiver | MqttReceiver,
    Field(discriminator="type"),
]


class RouteConfig(_Model):
    route: str = Field("", description="the rule's route name (case, emergency, webhook …); empty = any")
    severities: list[SeverityName] = Field(default_factory=list, description="severities it takes; empty = any")
    rule_ids: list[str] = Field(default_factory=list, description="rule id patterns (fnmatch); empty = any")
    match: dict[str, str] = Field(default_factory=dict, description="labels that must have these values")
    receivers: list[str] = Field(min_length=1, description="receiver names the alert goes to")
    continue_matching: bool = Field(False, description="also try the routes after this one")


class InhibitRuleConfig(_Model):
    name: str = Field("", description="what the rule is for, shown as the reason an alert is held back")
    source_match: dict[str, str] = Field(min_length=1, description="labels of the firing alert that inhibits")
    target_match: dict[str, str] = Field(min_length=1, description="labels of the alerts it holds back")
    equal: list[str] = Field(default_factory=list,
                             description="labels both must carry with the same non-empty value")


class OutboxConfig(_Model):
    base_delay_s: float = Field(1.0, gt=0, description=("first retry delay after a failed delivery; doubles per "
                                                        "attempt"))
    max_delay_s: float = Field(300.0, gt=0, description="retry delay cap, seconds")
    jitter: float = Field(0.2, ge=0, le=1, description="each retry delay is randomised by +/- this fraction")
    poll_interval_s: float = Field(1.0, gt=0, description=("how often the delivery worker looks for due messages, "
                                                           "seconds"))
    max_in_flight: int = Field(8, ge=1, description="deliveries under way at once")
    stop_timeout_s: float = Field(10.0, ge=0, description=("on stop, how long deliveries under way may finish, "
                                                           "seconds"))
    retention_days: float = Field(30.0, gt=0, description="delivered rows are kept this long (failed ones stay)")
    claim_s: float = Field(30.0, gt=0, description=(
        "a row taken for sending is this instance's alone for this long (another instance sends it after that, "
        "with the same Idempotency-Key, only if this one died mid-send); keep above the notifiers' timeout_s"))


def _default_inhibit_rules() -> list[InhibitRuleConfig]:
    return [
        InhibitRuleConfig(name="flood zone emergency", source_match={"alert_type": "flood_zone_emergency"},
                          target_match={"kind": "water_level"}, equal=["flood_zone"]),
        InhibitRuleConfig(name="gateway outage", source_match={"alert_type": "gateway_offline"},
                          target_match={"task": "device_offline"}, equal=["gateway"]),
        InhibitRuleConfig(name="district outage", source_match={"alert_type": "district_outage"},
                          target_match={"task": "device_offline"}, equal=["district"]),
    ]


class AlertsConfig(_Model):
    db_path: str = Field("var/alerts.sqlite", description=("alert state, silences and the notification outbox "
                                                           "(SQLite)"))
    timezone: str = Field("Asia/Shanghai", description="time zone of times in human-readable messages")
    repeat_interval_s: float = Field(4 * 3600.0, ge=0,
                                     description=("re-notify a firing, unacknowledged alert this often, seconds (0 "
                                                  "= never)"))
    evaluation_interval_s: float = Field(15.0, gt=0,
                                         description=("how often repeats and held-back notifications are checked, "
                                                      "seconds"))
    max_silence_s: float = Field(7 * 86400.0, gt=0,
                                 description="longest silence `urbansense alerts silence` and the desk console "
                                             "accept, seconds (a longer one is refused: renew it instead)")
    receivers: dict[str, Receiver] = Field(
        default_factory=dict, description="named receivers; see alerts/config.example.toml for every type")
    routes: list[RouteConfig] = Field(default_factory=list, description=("routing tree, tried in order; see "
                                                                         "alerts/config.example.toml"))
    default_receivers: list[str] = Field(default_factory=list,
                                         description="receivers for alerts that no route matches")
    inhibit_rules: list[InhibitRuleConfig] = Field(
        default_factory=_default_inhibit_rules,
        description="while a source alert fires, target alerts carrying the same `equal` labels are held back")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="delivery retries")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
        return v

    @model_validator(mode="after")
    def _receivers_exist(self) -> AlertsConfig:
        named = [(f"routes[{i}]", n) for i, r in enumerate(self.routes) for n in r.receivers]
        named += [("default_receivers", n) for n in self.default_receivers]
        unknown = [f"{where}: {n!r}" for where, n in named if n not in self.receivers]
        if unknown:
            known = ", ".join(sorted(self.receivers)) or "none"
            raise ValueError(f"unknown receiver(s) {'; '.join(unknown)} (configured: {known})")
        return self
