"""The urbansense dashboards, built with the Grafana foundation SDK (Grafana 11.6, schemaVersion 41).

Every panel query is raw InfluxQL over the schema in docs/schema.md; `device_info` (see
`grafana/device_info.py`) gives the map its coordinates and the online ratio its denominator.
`build_dashboards` returns plain JSON dicts keyed by a stable uid, so an export is byte-identical
from run to run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, common, dashboard, geomap, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from core.kinds import KINDS
from grafana.influxql import InfluxQL
from grafana.limits import level_thresholds, zone_limits
from grafana.texts import Language, text
from report import queries as figures_q

SCHEMA_VERSION = 41
"""Dashboard JSON schema version of Grafana 11.6, the release the pinned SDK is generated for."""

DATASOURCE_UID = "urbansense-influxdb"
UID_PREFIX = "urbansense-"
OPEN_ALERT_LOOKBACK = "30d"
"""How far back an alert's last transition is looked for when counting open alerts."""

NOISE_LIMITS: dict[str, tuple[float, float]] = zone_limits("noise.zone_limit")
"""GB 3096-2008 limits, dB(A): zone class → (day, night), from the noise.zone_limit preset."""
PM25_GRADE_I, PM10_GRADE_I = 35, 50
"""GB 3095-2012 grade I 24-hour means, µg/m³ (nature reserves); no preset rule fires on them, so they stay here."""
PM25_24H = (PM25_GRADE_I, level_thresholds("dust.pm2_5_24h")[0])
PM10_24H = (PM10_GRADE_I, level_thresholds("dust.pm10_24h")[0])
WATER_WARN_MM, WATER_CLOSE_MM = level_thresholds("water.depth")
BIN_FULL_PCT, BIN_OVERFLOW_PCT = level_thresholds("bin.full")[0], level_thresholds("bin.overflow")[0]

U_DBA, U_UGM3, U_PCT, U_MM = "suffix: dB(A)", "suffix: µg/m³", "percent", "lengthmm"

FILTER = '"district" =~ /^$district$/ AND "zone_class" =~ /^$zone_class$/ AND "device_id" =~ /^$device$/'

PRIMARY_FIELD = {name: spec.primary_field for name, spec in KINDS.items()}


def _ds() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)


def q(ref: str, query: str, *, table_: bool = False, alias: str = "") -> InfluxQL:
    return InfluxQL(ref, query, _ds(), table=table_, alias=alias)


def thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=None, color=base), *(dm.Threshold(value=v, color=c) for v, c in steps)])


def _color(mode: str) -> dashboard.FieldColor:
    return dashboard.FieldColor().mode(dm.FieldColorModeId(mode))


@dataclass(frozen=True)
class Var:
    """A query variable over one measurement's tag; multi-value with All = `.*` (matches absent tags too)."""

    name: str
    measurement: str
    where: str = ""

    def build(self, lang: Language) -> dashboard.QueryVariable:
        where = f" WHERE {self.where}" if self.where else ""
        key = "device_id" if self.name == "device" else self.name
        return (dashboard.QueryVariable(self.name).label(text(self.name, lang)).datasource(_ds())
                .query(f'SHOW TAG VALUES FROM "{self.measurement}" WITH KEY = "{key}"{where}')
                .multi(True).include_all(True).all_value(".*").refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dm.VariableSort.ALPHABETICAL_ASC)
                .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))


def tag_vars(measurement: str) -> list[Var]:
    return [Var("district", measurement),
            Var("zone_class", measurement, '"district" =~ /^$district$/'),
            Var("device", measurement, '"district" =~ /^$district$/ AND "zone_class" =~ /^$zone_class$/')]


def custom_var(name: str, lang: Language, options: Sequence[str], default: str) -> dashboard.CustomVariable:
    return (dashboard.CustomVariable(name).label(text(name, lang)).values(",".join(options))
            .current(dm.VariableOption(selected=True, text=default, value=default)))


def alert_annotation(lang: Language, where: str = "") -> dict[str, object]:
    """Alert transitions from `alerts` as an annotation query; Grafana draws it on every time-series panel."""
    extra = f" AND {where}" if where else ""
    query = ('SELECT "summary", "device_id", "rule_id", "severity", "to_state" FROM "alerts" '
             f"WHERE $timeFilter{extra}")
    return {"datasource": _ds().to_json(), "enable": True, "hide": False, "iconColor": "red",
            "name": text("alerts", lang),
            "target": {"refId": "Anno", "query": query, "rawQuery": True, "resultFormat": "table",
                       "fromAnnotations": True, "textColumn": "summary",
                       "tagsColumn": "device_id,rule_id,severity,to_state", "titleColumn": "", "timeEndColumn": ""}}


def _timeseries(title: str, unit: str, targets: Sequence[InfluxQL], *, span: int = 12, height: int = 8,
                steps: Sequence[tuple[float, str]] = (), base: str = "green", lines: bool = False
                ) -> timeseries.Panel:
    p = (timeseries.Panel().title(title).unit(unit).span(span).height(height).datasource(_ds())
         .line_width(1).fill_opacity(10).span_nulls(True)
         .legend(common.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                 .placement(cm.LegendPlacement.RIGHT).show_legend(True).calcs(["lastNotNull", "max"])))
    for t in targets:
        p = p.with_target(t)
    if steps:
        p = p.thresholds(thresholds(base, *steps))
        if lines:
            p = p.thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    return p


def _gauge(title: str, unit: str, targets: Sequence[InfluxQL], steps: Sequence[tuple[float, str]], *,
           span: int = 12, height: int = 8, base: str = "green", minmax: tuple[float, float] | None = None
           ) -> bargauge.Panel:
    p = (bargauge.Panel().title(title).unit(unit).span(span).height(height).datasource(_ds())
         .thresholds(thresholds(base, *steps)).color_scheme(_color("thresholds"))
         .display_mode(cm.BarGaugeDisplayMode.GRADIENT).orientation(cm.VizOrientation.HORIZONTAL)
         .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if minmax:
        p = p.min(minmax[0]).max(minmax[1])
    for t in targets:
        p = p.with_target(t)
    return p


def _table(title: str, targets: Sequence[InfluxQL], *, span: int = 12, height: int = 8) -> table.Panel:
    p = table.Panel().title(title).span(span).height(height).datasource(_ds())
    for t in targets:
        p = p.with_target(t)
    return p


def _transform(id_: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_, options=options)


def _finish(b: dashboard.Dashboard, annotations: list[dict[str, object]]) -> dict[str, object]:
    data = json.loads(json.dumps(b.build(), cls=JSONEncoder))
    data["annotations"] = {"list": annotations}
    data["schemaVersion"] = SCHEMA_VERSION
    x = y = row_h = 0
    for i, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = i
        panel.setdefault("fieldConfig", {"defaults": {}, "overrides": []})
        pos = panel["gridPos"]
        if x + pos["w"] > 24:  # wrap before a panel would overflow the 24-column grid
            x, y, row_h = 0, y + row_h, 0
        pos["x"], pos["y"] = x, y
        x, row_h = x + pos["w"], max(row_h, pos["h"])
    return data


def _base(uid: str, title: str, tags: Sequence[str]) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(UID_PREFIX + uid).tags(["urbansense", *tags])
            .time("now-6h", "now").refresh("1m").timezone("browser").editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR))


# --- City overview ---------------------------------------------------------------------------------

STATE_CODES = {0: ("normal", "green"), 1: ("alerting", "red"), 2: ("silent_state", "text"),
               3: ("silent_state", "dark-red")}
"""Map colour code per device: 2 (registered) - 2 (heard within the online window) + 1 (an alert firing)."""


def _device_map(lang: Language) -> geomap.Panel:
    a = q("devices", 'SELECT last("latitude") AS "latitude", last("longitude") AS "longitude", '
                     'last("latitude") * 0 + 2 AS "registered" FROM "device_info" '
                     'WHERE "district" =~ /^$district$/ GROUP BY "device_id", "kind", "district"', table_=True)
    b = q("online", 'SELECT count("received") * 0 - 2 AS "heard" FROM "device_health" '
                    'WHERE time > now() - $online_window AND "district" =~ /^$district$/ GROUP BY "device_id"',
          table_=True)
    c = q("alerting", 'SELECT count("fp") / count("fp") AS "alerting" FROM (SELECT last("fingerprint") AS "fp", '
                      f'"to_state" FROM "alerts" WHERE time > now() - {OPEN_ALERT_LOOKBACK} GROUP BY "device_id", '
                      '"rule_id") WHERE "to_state" = \'firing\' GROUP BY "device_id"', table_=True)
    mappings: list[dm.ValueMapping] = [dm.ValueMap(options={
        str(code): dm.ValueMappingResult(text=text(key, lang), color=color, index=code)
        for code, (key, color) in STATE_CODES.items()})]
    layer = cm.MapLayerOptions(
        type_val="markers", name=text("device_map", lang), tooltip=True,
        location=cm.FrameGeometrySource(mode=cm.FrameGeometrySourceMode.COORDS, latitude="latitude",
                                        longitude="longitude"),
        config={"showLegend": True, "style": {
            "color": {"field": "state", "fixed": "green"}, "opacity": 0.9, "size": {"fixed": 7},
            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"}}})
    p = (geomap.Panel().title(text("device_map", lang)).span(12).height(14).datasource(_ds())
         .with_target(a).with_target(b).with_target(c)
         .view(geomap.MapViewConfig().id("fit").lat(0).lon(0).zoom(11).all_layers(True))
         .basemap(common.MapLayerOptions().type("default").name("Basemap"))
         .layers([_Fixed(layer)]).mappings(mappings)
         .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS)).color_scheme(_color("thresholds"))
         .thresholds(thresholds("green"))
         .with_transformation(_transform("joinByField", {"byField": "device_id", "mode": "outer"}))
         .with_transformation(_transform("calculateField", {
             "mode": "reduceRow", "alias": "state", "replaceFields": False,
             "reduce": {"include": ["registered", "heard", "alerting"], "reducer": "sum"}})))
    return p


class _Fixed(common.MapLayerOptions):
    """A prebuilt model handed to an SDK method that takes a builder."""

    def __init__(self, model: cm.MapLayerOptions) -> None:
        self._model = model

    def build(self) -> cm.MapLayerOptions:
        return self._model


def _readings_per_minute(lang: Language) -> timeseries.Panel:
    targets = [q(kind, f'SELECT count("{field}") FROM "{kind}" WHERE $timeFilter AND "district" =~ /^$district$/ '
                       'GROUP BY time(1m) fill(0)', alias=kind)
               for kind, field in PRIMARY_FIELD.items()]
    return _timeseries(text("readings_per_min", lang), "cpm", targets).stacking(
        common.StackingConfig().mode(cm.StackingMode.NORMAL))


def _online_pct(lang: Language) -> bargauge.Panel:
    registered = q("registered", 'SELECT count("r") AS "registered" FROM (SELECT last("latitude") AS "r" '
                                 'FROM "device_info" WHERE "district" =~ /^$district$/ GROUP BY "device_id", '
                                 '"district") GROUP BY "district"', table_=True)
    online = q("online", 'SELECT count("n") AS "online" FROM (SELECT count("received") AS "n" FROM "device_health" '
                         'WHERE time > now() - $online_window AND "district" =~ /^$district$/ '
                         'GROUP BY "device_id", "district") GROUP BY "district"', table_=True)
    p = _gauge(text("online_pct", lang), "percentunit", [registered, online],
               [(0.9, "orange"), (0.98, "green")], base="red", minmax=(0, 1))
    return (p.with_transformation(_transform("joinByField", {"byField": "district", "mode": "outer"}))
            .with_transformation(_transform("calculateField", {
                "mode": "binary", "alias": "online %", "replaceFields": False,
                "binary": {"left": "online", "operator": "/", "right": "registered"}}))
            .with_transformation(_transform("organize", {"excludeByName": {"online": True, "registered": True}})))


_OPEN = (f'(SELECT last("summary") AS "summary", "to_state", "severity" FROM "alerts" WHERE time > now() - '
         f'{OPEN_ALERT_LOOKBACK} AND "district" =~ /^$district$/ GROUP BY "device_id", "rule_id") '
         "WHERE \"to_state\" = 'firing'")


def _open_alerts(lang: Language) -> stat.Panel:
    return (stat.Panel().title(text("open_alerts", lang)).span(6).height(6).datasource(_ds())
            .with_target(q("open", f'SELECT count("summary") AS "open" FROM {_OPEN}'))
            .thresholds(thresholds("green", (1, "orange"), (10, "red"))).color_scheme(_color("thresholds"))
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"])).unit("none"))


def _open_alerts_list(lang: Language) -> table.Panel:
    return _table(text("open_alerts_list", lang),
                  [q("list", f'SELECT "summary", "severity" FROM {_OPEN} GROUP BY "device_id", "rule_id"',
                     table_=True)], span=18, height=6)


WORST: dict[str, tuple[str, str]] = {
    name: (spec.primary_field, spec.dashboard.grafana_unit) for name, spec in KINDS.items() if spec.dashboard.worst_now}


def _worst_now(lang: Language) -> stat.Panel:
    p = (stat.Panel().title(text("worst_now", lang)).span(24).height(5).datasource(_ds())
         .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
         .color_scheme(_color("thresholds")).thresholds(thresholds("green")))
    for kind, (field, unit) in WORST.items():
        p = p.with_target(q(kind, f'SELECT max("v") AS "{text(kind, lang)}" FROM (SELECT last("{field}") AS "v" '
                                  f'FROM "{kind}" WHERE $timeFilter AND "district" =~ /^$district$/ '
                                  'GROUP BY "device_id")'))
        p = p.override_by_query(kind, [dm.DynamicConfigValue(id_val="unit", value=unit)])
    p = p.with_target(q("parking", f'SELECT count("o") AS "{text("parking", lang)}" FROM (SELECT last("occupied") '
                                   'AS "o" FROM "parking" WHERE $timeFilter AND "district" =~ /^$district$/ '
                                   'GROUP BY "device_id") WHERE "o" = true'))
    days = [day for day, _ in NOISE_LIMITS.values()]
    steps = {"noise": [(min(days), "orange"), (max(days), "red")],
             "dust": [(PM25_24H[0], "orange"), (PM25_24H[1], "red")],
             "bin_fill": [(BIN_FULL_PCT, "orange"), (BIN_OVERFLOW_PCT, "red")],
             "water_level": [(WATER_WARN_MM, "orange"), (WATER_CLOSE_MM, "red")]}
    for kind, st in steps.items():
        p = p.override_by_query(kind, [dm.DynamicConfigValue(id_val="thresholds", value=thresholds("green", *st)
                                                              .build().to_json())])
    return p


def overview(lang: Language) -> dict[str, object]:
    b = _base("overview", text("overview", lang), ["overview"])
    b = (b.with_variable(Var("district", "device_info").build(lang))
         .with_variable(custom_var("online_window", lang, ["5m", "15m", "30m", "1h"], "15m")))
    for p in (_device_map(lang), _online_pct(lang), _readings_per_minute(lang), _open_alerts(lang),
              _open_alerts_list(lang), _worst_now(lang)):
        b = b.with_panel(p)
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


# --- One dashboard per kind -------------------------------------------------------------------------

def _kind_base(kind: str, lang: Language) -> dashboard.Dashboard:
    b = _base(kind.replace("_", "-"), text(kind, lang), [kind])
    for v in tag_vars(kind):
        b = b.with_variable(v.build(lang))
    return b


def _per_device(kind: str, expr: str, *, where: str = "", group: str = "time($__interval)") -> InfluxQL:
    extra = f" AND {where}" if where else ""
    return q("A", f'SELECT {expr} FROM "{kind}" WHERE $timeFilter AND {FILTER}{extra} '
                  f'GROUP BY {group}, "device_id" fill(none)', alias="$tag_device_id")


def laeq(where: str, group: str = "time($__interval)") -> InfluxQL:
    """LAeq per device over each interval as GB 3096 defines it: the energy average 10·log10(mean 10^(L/10)).

    The arithmetic mean of dB values understates a loud spell (40 dB for 55 min and 65 dB for 5 min
    is 54.4 dB LAeq, not 42.1), so a panel could sit below the limit while the rule fires.
    """
    return q("A", f'SELECT 10 * log10(mean("e")) AS "laeq_db" FROM (SELECT pow(10, "laeq_db" / 10) AS "e" '
                  f'FROM "noise" WHERE $timeFilter AND {FILTER} AND {where}) WHERE $timeFilter '
                  f'GROUP BY {group}, "device_id" fill(none)', alias="$tag_device_id")


def noise(lang: Language) -> dict[str, object]:
    b = _kind_base("noise", lang)
    for zone, (day, night) in NOISE_LIMITS.items():
        b = b.with_panel(_timeseries(
            text("noise_zone", lang, zone=zone, day=f"{day:g}", night=f"{night:g}"), U_DBA,
            [laeq(f"\"zone_class\" = '{zone}'")],
            steps=[(night, "orange"), (day, "red")], lines=True))
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


def dust(lang: Language) -> dict[str, object]:
    b = _kind_base("dust", lang)
    for field, key, limits in (("pm2_5_ugm3", "pm25", PM25_24H), ("pm10_ugm3", "pm10", PM10_24H)):
        steps = [(limits[0], "orange"), (limits[1], "red")]
        b = b.with_panel(_timeseries(text(f"{key}_hourly", lang), U_UGM3,
                                     [_per_device("dust", f'mean("{field}")', group="time(1h)")],
                                     steps=steps, lines=True))
        b = b.with_panel(_gauge(text(f"{key}_24h", lang), U_UGM3, [q("A", (
            f'SELECT mean("{field}") FROM "dust" WHERE time > now() - 24h AND {FILTER} GROUP BY "device_id"'),
            alias="$tag_device_id")], steps))
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


def bin_fill(lang: Language) -> dict[str, object]:
    b = _kind_base("bin_fill", lang)
    b = b.with_panel(_timeseries(text("fill_pct", lang), U_PCT, [_per_device("bin_fill", 'mean("fill_pct")')],
                                 steps=[(BIN_FULL_PCT, "orange"), (BIN_OVERFLOW_PCT, "red")], lines=True)
                     .min(0).max(100))
    eta = q("A", 'SELECT "hours" FROM (SELECT (100 - last("fill_pct")) / (last("fill_pct") - first("fill_pct")) '
                 'AS "hours", last("fill_pct") - first("fill_pct") AS "rise" FROM "bin_fill" '
                 f'WHERE time > now() - 1h AND {FILTER} GROUP BY "device_id") WHERE "rise" > 0 GROUP BY "device_id"',
            alias="$tag_device_id")
    b = b.with_panel(_gauge(text("hours_to_full", lang), "h", [eta], [(2, "orange"), (6, "green")], base="red"))
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


def parking(lang: Language) -> dict[str, object]:
    b = _kind_base("parking", lang).with_variable(
        custom_var("overstay", lang, ["10m", "30m", "1h", "2h", "4h"], "2h"))
    occupied = q("occupied", f'SELECT count("occupied") AS "occupied" FROM "parking" WHERE $timeFilter AND {FILTER} '
                             'AND "occupied" = true GROUP BY time($__interval) fill(0)')
    reported = q("reported", f'SELECT count("occupied") AS "reported" FROM "parking" WHERE $timeFilter AND {FILTER} '
                             'GROUP BY time($__interval) fill(0)')
    occ = (_timeseries(text("occupancy", lang), "percentunit", [occupied, reported],
                       steps=[(0.85, "orange"), (0.95, "red")]).min(0).max(1)
           .with_transformation(_transform("joinByField", {"byField": "Time", "mode": "outer"}))
           .with_transformation(_transform("calculateField", {
               "mode": "binary", "alias": "occupancy", "replaceFields": True,
               "binary": {"left": "occupied", "operator": "/", "right": "reported"}})))
    over = q("A", 'SELECT "device_id", "occupied" FROM (SELECT count(distinct("occupied")) AS "states", '
                  f'last("occupied") AS "occupied" FROM "parking" WHERE time > now() - $overstay AND {FILTER} '
                  'GROUP BY "device_id") WHERE "states" = 1 AND "occupied" = true', table_=True)
    b = b.with_panel(occ).with_panel(_table(text("overstays", lang), [over]))
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


def water_level(lang: Language) -> dict[str, object]:
    b = _kind_base("water_level", lang)
    steps = [(WATER_WARN_MM, "orange"), (WATER_CLOSE_MM, "red")]
    b = b.with_panel(_timeseries(text("depth", lang), U_MM, [_per_device("water_level", 'mean("depth_mm")')],
                                 steps=steps, lines=True, span=24, height=10))
    b = b.with_panel(_timeseries(text("depth_trend", lang), "suffix: mm/10min", [_per_device(
        "water_level", 'derivative(mean("depth_mm"), 10m)', group="time(5m)")]))
    b = b.with_panel(_timeseries(text("depth_district", lang), U_MM, [q(
        "A", f'SELECT max("depth_mm") FROM "water_level" WHERE $timeFilter AND {FILTER} '
             'GROUP BY time($__interval), "district" fill(none)', alias="$tag_district")], steps=steps, lines=True))
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


# --- Device health ----------------------------------------------------------------------------------

def device_health(lang: Language) -> dict[str, object]:
    b = _base("device-health", text("device_health", lang), ["health"])
    for v in tag_vars("device_health"):
        b = b.with_variable(v.build(lang))
    b = b.with_variable(custom_var("online_window", lang, ["5m", "15m", "30m", "1h"], "15m"))
    h = "device_health"
    b = b.with_panel(_timeseries(text("battery", lang), U_PCT, [_per_device(h, 'last("battery_pct")')],
                                 steps=[(10, "orange"), (20, "green")], base="red", lines=True).min(0).max(100))
    b = b.with_panel(_timeseries(text("rssi", lang), "dBm", [_per_device(h, 'mean("rssi_dbm")')],
                                 steps=[(-115, "orange"), (-100, "green")], base="red"))
    b = b.with_panel(_timeseries(text("snr", lang), "dB", [_per_device(h, 'mean("snr_db")')],
                                 steps=[(-10, "orange"), (0, "green")], base="red"))
    b = b.with_panel(_gauge(text("fcnt_gaps", lang), "none", [q(
        "A", f'SELECT sum("fcnt_gap") FROM "device_health" WHERE $timeFilter AND {FILTER} GROUP BY "device_id"',
        alias="$tag_device_id")], [(1, "orange"), (10, "red")]))
    last_seen = _table(text("last_seen", lang), [q(
        "A", f'SELECT last("rssi_dbm") AS "rssi_dbm", last("battery_pct") AS "battery_pct" FROM "device_health" '
             f'WHERE $timeFilter AND {FILTER} GROUP BY "device_id"', table_=True)])
    registered = q("registered", 'SELECT last("latitude") AS "latitude" FROM "device_info" WHERE '
                                 '"district" =~ /^$district$/ AND "zone_class" =~ /^$zone_class$/ AND '
                                 '"device_id" =~ /^$device$/ GROUP BY "device_id", "kind", "district"', table_=True)
    heard = q("heard", f'SELECT last("received") AS "heard" FROM "device_health" WHERE time > now() - $online_window '
                       f'AND {FILTER} GROUP BY "device_id"', table_=True)
    silent = (_table(text("silent", lang), [registered, heard])
              .with_transformation(_transform("joinByField", {"byField": "device_id", "mode": "outer"}))
              .with_transformation(_transform("filterByValue", {
                  "type": "include", "match": "all",
                  "filters": [{"fieldName": "heard", "config": {"id": "isNull", "options": {}}}]})))
    b = b.with_panel(last_seen).with_panel(silent)
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


# --- The bureau's figures (the same InfluxQL as `urbansense report`) -------------------------------



def figures_panel(kind: str, lang: Language) -> table.Panel:
    """One row per district: devices, expected and arrived reports, online rate, readings, accuracy, alerts.

    Targets are `report.queries` with Grafana's `$timeFilter`, `$district` and `$__range_s`; the
    rates are computed by the panel's transformations exactly as `report.figures` does.
    """
    when, district = "$timeFilter", "$district"
    targets = [q("devices", figures_q.devices(kind, district, "$__range_s"), table_=True),
               q("readings", figures_q.readings(kind, when, district), table_=True),
               q("good", figures_q.good(kind, when, district), table_=True),
               q("opened", figures_q.alerts_opened(kind, when, district), table_=True),
               q("closed", figures_q.alerts_closed(kind, when, district), table_=True)]
    p = _table(text("figures_kind", lang).format(kind=text(kind, lang)), targets, span=24, height=7)
    p = (p.with_transformation(_transform("joinByField", {"byField": "district", "mode": "outer"}))
         .with_transformation(_transform("calculateField", {
             "mode": "binary", "alias": "online_rate", "replaceFields": False,
             "binary": {"left": "reports", "operator": "/", "right": "expected"}}))
         .with_transformation(_transform("calculateField", {
             "mode": "binary", "alias": "accuracy_rate", "replaceFields": False,
             "binary": {"left": "good", "operator": "/", "right": "readings"}}))
         .with_transformation(_transform("organize", {"excludeByName": {"Time": True, "Time 1": True,
                                                                         "Time 2": True, "Time 3": True,
                                                                         "Time 4": True, "Time 5": True}})))
    for name in ("online_rate", "accuracy_rate"):
        p = p.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
    return p


def figures(lang: Language) -> dict[str, object]:
    b = _base("figures", text("figures", lang), ["figures"]).time("now-1d/d", "now-1d/d").refresh("")
    b = b.with_variable(Var("district", "device_info").build(lang))
    for kind in KINDS:
        b = b.with_panel(figures_panel(kind, lang))
    return _finish(b, [alert_annotation(lang, '"district" =~ /^$district$/')])


DASHBOARDS: dict[str, Callable[[Language], dict[str, object]]] = {
    "overview": overview, "figures": figures, "noise": noise, "dust": dust, "bin-fill": bin_fill, "parking": parking,
    "water-level": water_level, "device-health": device_health}


def build_dashboards(lang: Language = "zh") -> dict[str, dict[str, object]]:
    """uid → dashboard JSON, every dashboard urbansense ships."""
    return {UID_PREFIX + name: make(lang) for name, make in DASHBOARDS.items()}
