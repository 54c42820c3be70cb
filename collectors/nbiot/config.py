"""The `[nbiot]` section of config.toml: UDP, CoAP and platform-push receivers."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from core.config import Section
from core.secrets import SecretStr


class NbiotConfig(Section):
    udp: bool = Field(False, description="listen for NB-IoT device frames on UDP (collectors/nbiot/frame.py layout)")
    udp_host: str = Field("127.0.0.1", description=("UDP listen address; 0.0.0.0 to take datagrams from the "
                                                    "operator's network"))
    udp_port: int = Field(8600, ge=0, le=65535, description="UDP listen port (0 = any free port)")
    udp_buffer: int = Field(50_000, ge=1, description=("datagrams waiting for the pipeline before new ones are "
                                                       "dropped (and counted)"))
    coap: bool = Field(False, description="serve a CoAP endpoint (aiocoap) for LwM2M-style POSTs of the same frames")
    coap_host: str = Field("127.0.0.1", description="CoAP listen address")
    coap_port: int = Field(5683, ge=1, le=65535, description="CoAP UDP port")
    coap_path: str = Field("up", min_length=1, description="CoAP resource path frames are POSTed to (coap://host/up)")
    push: bool = Field(False, description=("serve the HTTP receiver for CTWing/AEP (/push/ctwing/<token>) and "
                                           "OneNET (/push/onenet)"))
    push_host: str = Field("127.0.0.1", description="HTTP listen address; put a TLS reverse proxy in front of it")
    push_port: int = Field(8087, ge=0, le=65535, description="HTTP port (0 = any free port)")
    ctwing_token: SecretStr = Field(
        SecretStr(""), description=("path token CTWing must use (or env URBANSENSE_CTWING_TOKEN); empty = route "
                                    "closed"))
    onenet_token: SecretStr = Field(
        SecretStr(""),
        description="OneNET push token, signs every push (or env URBANSENSE_ONENET_TOKEN); empty = closed")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest push request body accepted (bigger: 413)")
    nonce_window_s: float = Field(86400.0, gt=0, description=("a signed OneNET push whose nonce was seen within "
                                                              "this is a replay: refused (409)"))
    max_push_age_s: float = Field(0.0, ge=0, description=("refuse pushes whose own time is further than this from "
                                                          "now (403); 0 = off"))
    push_cert_file: str = Field("", description=("PEM certificate (chain): serve the push receiver over HTTPS "
                                                 "(TLS 1.2+); empty = plain HTTP"))
    push_key_file: str = Field("", description="PEM private key of push_cert_file")
    ctwing_sources: list[str] = Field(default_factory=list, description=("addresses/networks CTWing may push from, "
                                                                         "e.g. [\"1.2.3.0/24\"]; [] = any"))

    @field_validator("ctwing_sources")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 1.2.3.4 or 1.2.3.0/24)") from None
        return v
