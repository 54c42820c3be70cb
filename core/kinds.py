"""The one table of sensor kinds: what each measures, what its installation needs, how it is shown.

Every other list of kinds (decoders, rules, provisioning, grafana) is read from `KINDS`, in the
pattern of Home Assistant's entity-description tables: one frozen description per kind, data not code.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.schema import HEALTH_SPECS, MEASUREMENTS, FieldSpec, Measurement


@dataclass(frozen=True, slots=True)
class InstallParam:
    """A per-device installation parameter, in `unit`, with the range a real installation falls in."""

    name: str
    unit: str
    lo: float
    hi: float
    description: str


@dataclass(frozen=True, slots=True)
class DashboardHints:
    """How grafana shows a kind: its dashboard's slug, the Grafana unit of the primary field, and
    whether it has a place on the overview's "worst now" row (a level that can be worst)."""

    slug: str
    grafana_unit: str
    worst_now: bool


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One sensor kind. `name` is also its InfluxDB measurement; `primary_field` is the value a
    map or overview shows; `install` names the install parameters it uses; `derivation` says which
    field `decoders.derive` computes from the decoded ones and the install parameters."""

    name: str
    title: str
    primary_field: str
    install: tuple[str, ...]
    derivation: str
    dashboard: DashboardHints

    @property
    def measurement(self) -> Measurement:
        return MEASUREMENTS[self.name]

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        return self.measurement.fields

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.measurement.fields)


INSTALL_PARAMS: dict[str, InstallParam] = {p.name: p for p in (
    InstallParam("mount_height_mm", "mm", 300.0, 10_000.0, "height of the sensor above the dry road (a pole 0.3–10 m)"),
    InstallParam("bin_depth_mm", "mm", 200.0, 5_000.0, "distance from the sensor to the empty bin's floor (0.2–5 m)"),
    InstallParam("dead_zone_mm", "mm", 0.0, 2_000.0, "blind zone in front of the sensor, overriding the model's"),
)}
"""Install parameters, in the order CSV sheets list them."""

KINDS: dict[str, KindSpec] = {k.name: k for k in (
    KindSpec("noise", "sound level meters", "laeq_db", (), "",
             DashboardHints("noise", "suffix: dB(A)", True)),
    KindSpec("dust", "particulate matter monitors", "pm2_5_ugm3", (), "",
             DashboardHints("dust", "suffix: µg/m³", True)),
    KindSpec("bin_fill", "waste bin fill-level sensors", "fill_pct", ("bin_depth_mm", "dead_zone_mm"),
             "fill_pct = (bin_depth_mm − distance_mm) / bin_depth_mm × 100, clamped to 0–100",
             DashboardHints("bin-fill", "percent", True)),
    KindSpec("parking", "parking bay occupancy sensors", "occupied", (), "",
             DashboardHints("parking", "", False)),
    KindSpec("water_level", "road waterlogging sensors", "depth_mm", ("mount_height_mm", "dead_zone_mm"),
             "depth_mm = mount_height_mm − distance_mm, never negative",
             DashboardHints("water-level", "lengthmm", True)),
)}
"""Every reading kind, in the order lists and dashboards show them."""

KIND_NAMES: tuple[str, ...] = tuple(KINDS)
HEALTH_FIELD_NAMES: tuple[str, ...] = tuple(s.name for s in HEALTH_SPECS)

USED_BY: dict[str, tuple[str, ...]] = {p: tuple(k.name for k in KINDS.values() if p in k.install)
                                       for p in INSTALL_PARAMS}
"""Which kinds each install parameter applies to; a value for another kind is a shifted column."""


def _check() -> None:
    for k in KINDS.values():
        if k.primary_field not in k.field_names:
            raise AssertionError(f"kind {k.name}: primary field {k.primary_field} is not one of its fields")
        for p in k.install:
            if p not in INSTALL_PARAMS:
                raise AssertionError(f"kind {k.name}: unknown install parameter {p}")


_check()
