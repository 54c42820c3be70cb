"""The `[cluster]` section: leader and standby, ingest workers (issue 19; docs/architecture.md "Cluster")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from core.config import Section

Role = Literal["both", "ingest", "leader"]
ROLES: tuple[Role, ...] = ("both", "ingest", "leader")


class ClusterConfig(Section):
    enabled: bool = Field(False, description=("false: one process does everything, as a single instance; true: "
                                              "ingest through MQTT 5 shared subscriptions and one elected leader"))
    role: Role = Field("both", description=("\"both\": ingest and stand for leader; \"ingest\": ingest only; "
                                            "\"leader\": leader candidate only (`urbansense run --role`)"))
    share_group: str = Field("urbansense", min_length=1,
                             description="MQTT 5 shared subscription group: $share/<group>/<each collector topic>")
    readings_topic: str = Field("urbansense/readings", min_length=1,
                                description="ingest → leader: compact decoded readings, QoS 1, one message a chunk")
    leader_client_id: str = Field("urbansense-leader", min_length=1,
                                  description="the persistent MQTT session the leader reads readings from")
    lock_key: int = Field(0x75726261, ge=-(1 << 63), lt=1 << 63,
                          description="PostgreSQL advisory lock key (int64) the leader holds")
    takeover_s: float = Field(10.0, gt=0, le=600, description=("a standby tries the lock every takeover_s/5 and "
                                                               "leads within takeover_s of the leader's death"))

    @field_validator("share_group", "readings_topic", "leader_client_id")
    @classmethod
    def _no_wildcards(cls, v: str) -> str:
        if any(c in v for c in "+#\x00"):
            raise ValueError("must not contain MQTT wildcards (+, #) or NUL")
        return v

    @property
    def ingests(self) -> bool:
        """This process runs collectors and the pipeline (always, unless clustered as "leader" only)."""
        return not self.enabled or self.role != "leader"

    @property
    def campaigns(self) -> bool:
        """This process stands for leader (clustered as "both" or "leader")."""
        return self.enabled and self.role != "ingest"
