"""Line protocol: what we write is what InfluxDB stores, one point per line, with the schema's types."""

from __future__ import annotations

import itertools
import math
import os

import httpx
import pytest
from conftest import influx_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.reading import Reading
from core.schema import (
    ALERT_TYPES,
    CANONICAL_TYPES,
    HEALTH_FIELDS,
    MEASUREMENTS,
    DroppedField,
    FieldType,
    coerce_fields,
    field_type,
)
from sim.daemons import Daemon
from storage.lineprotocol import (
    encode_point,
    encode_reading,
    escape_tag,
    field_key_problem,
    normalize_field_key,
    normalize_tag,
    parse_line,
    split_lines,
    tag_key_ok,
    tag_string,
)

T0 = 1_700_000_000_000_000_000
TAGS = (("device_id", "wl-001"), ("district", "xicheng"), ("model", "milesight-em500-udl"), ("zone_class", "2"))


@pytest.fixture(scope="module")
def prop_db(influxd: Daemon) -> str:
    """One database for the property tests; each example writes to a measurement of its own."""
    httpx.post(f"{influxd.url}/query", params={"q": 'DROP DATABASE "storage_props"'}).raise_for_status()
    httpx.post(f"{influxd.url}/query", params={"q": 'CREATE DATABASE "storage_props"'}).raise_for_status()
    return "storage_props"


def write(influxd: Daemon, db: str, body: bytes) -> None:
    r = httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "ns"}, content=body, timeout=30)
    assert r.status_code == 204, r.text


def rows(influxd: Daemon, db: str, q: str) -> list[dict]:
    out = []
    for series in influx_query(influxd, db, q):
        for values in series["values"]:
            out.append(dict(zip(series["columns"], values, strict=True)))
    return out


_measurements = itertools.count()
SPECIAL = list(',= "\\\n\r\t\0#\'{}[]é字\u2028')
nasty_text = st.text(alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=("Cs",))),
                     max_size=24)
PROPS = settings(max_examples=int(os.environ.get("STORAGE_PROP_EXAMPLES", "60")), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---- against the real influxd ----

@PROPS
@given(values=st.lists(nasty_text, min_size=1, max_size=8))
def test_any_tag_value_comes_back_identical_as_exactly_one_point(influxd: Daemon, prop_db: str,
                                                                  values: list[str]) -> None:
    measurement = f"tags{next(_measurements)}"
    body = b"".join(encode_point(measurement, [("n", str(i)), ("v", v)], {"x": float(i)}, T0)
                    for i, v in enumerate(values))
    write(influxd, prop_db, body)
    got = rows(influxd, prop_db, f'SELECT x, v FROM "{measurement}"')
    assert len(got) == len(values)
    by_index = {int(r["x"]): r["v"] for r in got}
    assert by_index == {i: (normalize_tag(v) or None) for i, v in enumerate(values)}


@PROPS
@given(keys=st.lists(nasty_text.filter(lambda k: k.replace("\n", " ") != "x"), min_size=1, max_size=8))
def test_any_writable_tag_key_comes_back_identical_as_exactly_one_point(influxd: Daemon, prop_db: str,
                                                                       keys: list[str]) -> None:
    measurement = f"tagkeys{next(_measurements)}"
    body = b"".join(encode_point(measurement, [(k, "v")], {"x": float(i)}, T0 + i) for i, k in enumerate(keys))
    write(influxd, prop_db, body)
    got = rows(influxd, prop_db, f'SELECT * FROM "{measurement}"')
    assert len(got) == len(keys)
    for row in got:
        i = int(row.pop("x"))
        tags = {col: val for col, val in row.items() if col != "time" and val is not None}
        assert tags == ({normalize_tag(keys[i]): "v"} if tag_key_ok(keys[i]) else {})


@PROPS
@given(keys=st.lists(nasty_text.filter(lambda k: k not in CANONICAL_TYPES), min_size=1, max_size=8))
def test_any_writable_field_key_comes_back_identical_as_exactly_one_point(influxd: Daemon, prop_db: str,
                                                                         keys: list[str]) -> None:
    measurement = f"keys{next(_measurements)}"
    body = b"".join(encode_point(measurement, [], {k: float(i)}, T0 + i) for i, k in enumerate(keys))
    writable = {i: normalize_field_key(k) for i, k in enumerate(keys) if field_key_problem(k) is None}
    if not writable:
        assert body == b""
        return
    write(influxd, prop_db, body)
    got = rows(influxd, prop_db, f'SELECT * FROM "{measurement}"')
    assert len(got) == len(writable)
    for row in got:
        present = {col: val for col, val in row.items() if col != "time" and val is not None}
        i = row["time"] - T0
        assert present == {writable[i]: i}


@PROPS
@given(texts=st.lists(nasty_text, min_size=1, max_size=8))
def test_any_string_value_comes_back_identical_as_exactly_one_point(influxd: Daemon, prop_db: str,
                                                                   texts: list[str]) -> None:
    measurement = f"strings{next(_measurements)}"
    body = b"".join(encode_point(measurement, [("v", s)], {"s": s, "n": float(i)}, T0 + i)
                    for i, s in enumerate(texts))
    assert len(split_lines(body)) == len(texts)
    write(influxd, prop_db, body)
    got = rows(influxd, prop_db, f'SELECT n, s FROM "{measurement}"')
    assert len(got) == len(texts)
    assert {int(r["n"]): r["s"] for r in got} == dict(enumerate(texts))


@PROPS
@given(floats=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=10),
       ints=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=10))
def test_floats_and_integers_round_trip_exactly(influxd: Daemon, prop_db: str, floats: list[float],
                                                ints: list[int]) -> None:
    measurement = f"numbers{next(_measurements)}"
    body = b"".join(encode_point(measurement, [], {"vendor_value": f}, T0 + i) for i, f in enumerate(floats))
    body += b"".join(encode_point(measurement, [], {"fcnt": n}, T0 + 100 + i) for i, n in enumerate(ints))
    write(influxd, prop_db, body)
    got = rows(influxd, prop_db, f'SELECT vendor_value, fcnt FROM "{measurement}"')
    assert [float(r["vendor_value"]) for r in got if r["time"] < T0 + 100] == floats
    assert [r["fcnt"] for r in got if r["time"] >= T0 + 100] == ints


def test_field_types_follow_the_schema_whatever_python_type_arrives(influxd: Daemon, influx_db: str) -> None:
    readings = [
        Reading("p1", "parking", T0, {"occupied": 1, "vehicle_count": 3.0, "vendor_flag": True,
                                      "vendor_level": 7, "vendor_note": "ok"}, TAGS, {"battery_pct": 90}),
        Reading("p1", "parking", T0 + 1, {"occupied": True, "vehicle_count": 4, "vendor_flag": False,
                                          "vendor_level": 7.5, "vendor_note": "fine"}, TAGS,
                {"battery_pct": 89.5, "fcnt": 12, "fcnt_gap": 0, "rssi_dbm": -97, "snr_db": 7.25}),
        Reading("w1", "water_level", T0, {"distance_mm": 30, "depth_mm": 0}, TAGS),
    ]
    write(influxd, influx_db, b"".join(encode_reading(r) for r in readings))
    types = {}
    for series in influx_query(influxd, influx_db, "SHOW FIELD KEYS"):
        for key, kind in series["values"]:
            types[(series["name"], key)] = kind
    assert types == {
        ("parking", "occupied"): "boolean", ("parking", "vehicle_count"): "integer",
        ("parking", "vendor_flag"): "boolean", ("parking", "vendor_level"): "float",
        ("parking", "vendor_note"): "string",
        ("device_health", "battery_pct"): "float", ("device_health", "fcnt"): "integer",
        ("device_health", "fcnt_gap"): "integer", ("device_health", "rssi_dbm"): "float",
        ("device_health", "snr_db"): "float",
        ("water_level", "distance_mm"): "float", ("water_level", "depth_mm"): "float",
    }
    got = rows(influxd, influx_db, "SELECT * FROM parking")
    assert [(r["occupied"], r["vehicle_count"], r["device_id"], r["zone_class"]) for r in got] == \
        [(True, 3, "wl-001", "2"), (True, 4, "wl-001", "2")]


def test_same_series_and_time_written_twice_is_one_point(influxd: Daemon, influx_db: str) -> None:
    first = Reading("w1", "water_level", T0, {"depth_mm": 120.0}, TAGS, {"battery_pct": 80.0})
    write(influxd, influx_db, encode_reading(first))
    write(influxd, influx_db, encode_reading(first))
    write(influxd, influx_db, encode_reading(Reading("w1", "water_level", T0, {"depth_mm": 150.0}, TAGS)))
    assert [(r["time"], r["depth_mm"]) for r in rows(influxd, influx_db, "SELECT * FROM water_level")] == \
        [(T0, 150.0)]
    assert len(rows(influxd, influx_db, "SELECT * FROM device_health")) == 1


def test_alert_points_and_every_measurement_get_the_documented_field_types(influxd: Daemon,
                                                                          influx_db: str) -> None:
    body = b""
    for m in MEASUREMENTS.values():
        sample = {FieldType.FLOAT: 1, FieldType.INTEGER: 2.0, FieldType.BOOLEAN: 1, FieldType.STRING: "s"}
        tags = [(k, "x") for k in m.tags]
        fields = {spec.name: sample[spec.type] for spec in m.fields}
        body += encode_point(m.name, tags, fields, T0, types=ALERT_TYPES if m.name == "alerts" else CANONICAL_TYPES)
    write(influxd, influx_db, body)
    stored = {(s["name"], key): kind for s in influx_query(influxd, influx_db, "SHOW FIELD KEYS")
              for key, kind in s["values"]}
    assert stored == {(m.name, spec.name): str(spec.type) for m in MEASUREMENTS.values() for spec in m.fields}
    tag_keys = {(s["name"], k) for s in influx_query(influxd, influx_db, "SHOW TAG KEYS") for [k] in s["values"]}
    assert tag_keys == {(m.name, k) for m in MEASUREMENTS.values() for k in m.tags}


# ---- pure ----

def test_a_reading_becomes_its_kind_line_and_a_device_health_line() -> None:
    r = Reading("n1", "noise", T0, {"laeq_db": 61.5, "battery_pct": 77}, TAGS, {"battery_pct": 77, "fcnt": 5})
    assert encode_reading(r) == (
        b"noise,device_id=wl-001,district=xicheng,model=milesight-em500-udl,zone_class=2 "
        b"laeq_db=61.5,battery_pct=77.0 1700000000000000000\n"
        b"device_health,device_id=wl-001,district=xicheng,model=milesight-em500-udl,zone_class=2 "
        b"battery_pct=77.0,fcnt=5i 1700000000000000000\n")
    assert encode_reading(Reading("n1", "noise", T0, {"laeq_db": 61.5}, TAGS)).count(b"\n") == 1


def test_values_that_cannot_be_coerced_are_dropped_with_a_reason() -> None:
    dropped: list[DroppedField] = []
    r = Reading("n1", "noise", T0, {"laeq_db": math.nan, "lmax_db": "loud", "lmin_db": 40, "time": 1.0,
                                    "vendor_inf": math.inf, "vendor_obj": object()}, TAGS,
                {"fcnt": 2.5, "fcnt_gap": 2**70, "battery_pct": True})
    assert encode_reading(r, dropped) == (
        b"noise,device_id=wl-001,district=xicheng,model=milesight-em500-udl,zone_class=2 lmin_db=40.0 "
        b"1700000000000000000\n")
    assert {(d.measurement, d.field): d.reason for d in dropped} == {
        ("noise", "laeq_db"): "nan is not a finite number",
        ("noise", "lmax_db"): "str for a float field",
        ("noise", "time"): "field name 'time' is reserved by InfluxDB",
        ("noise", "vendor_inf"): "inf is not a finite number",
        ("noise", "vendor_obj"): "object is not a number, boolean or string",
        ("device_health", "fcnt"): "2.5 is not a whole number",
        ("device_health", "fcnt_gap"): "integer outside the 64-bit range",
        ("device_health", "battery_pct"): "boolean for a float field",
    }


def test_a_reading_with_nothing_writable_encodes_to_nothing() -> None:
    dropped: list[DroppedField] = []
    assert encode_reading(Reading("n1", "noise", T0, {"laeq_db": math.nan}, TAGS), dropped) == b""
    assert len(dropped) == 1


def test_bad_measurement_or_time_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="measurement name"):
        encode_reading(Reading("x", "", T0, {"a": 1.0}, TAGS))
    with pytest.raises(ValueError, match="time_ns"):
        encode_reading(Reading("x", "noise", "yesterday", {"a": 1.0}, TAGS))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time range"):
        encode_reading(Reading("x", "noise", 2**63, {"a": 1.0}, TAGS))


def test_tag_escaping_rules() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag("line1\nline2") == "line1\\ line2"
    assert escape_tag("ends with\\\\") == "ends\\ with"
    assert tag_string((("a", ""), ("b", "\\"), ("time", "x"), ("z", "1"))) == ",z=1"


def test_lone_surrogates_become_question_marks_instead_of_failing() -> None:
    line = encode_point("m", [("t", "a\ud800b")], {"s": "x\udfffy"}, T0)
    assert line == b'm,t=a?b s="x?y" 1700000000000000000\n'


def test_split_lines_keeps_newlines_inside_strings_and_skips_blanks_and_comments() -> None:
    body = b'm s="a\nb",n=1 1\n\n# comment\nm,t=x\\ y n=2 2\n  \nm s="q\\"\n" 3\n'
    assert split_lines(body) == [b'm s="a\nb",n=1 1', b"m,t=x\\ y n=2 2", b'm s="q\\"\n" 3']


def test_parse_line_reads_back_what_encode_wrote() -> None:
    line = encode_point("m x", [("d,i", "a=b c"), ("z", "\\,")], {"k=1": 1.5, "fcnt": 3, "f": True, "s": 'q"\\'},
                        T0)
    parsed = parse_line(split_lines(line)[0])
    assert parsed.measurement == "m x"
    assert parsed.tags == {"d,i": "a=b c", "z": "\\,"}
    assert {k: v[0] for k, v in parsed.fields.items()} == {"k=1": "float", "fcnt": "integer", "f": "boolean",
                                                           "s": "string"}
    assert parsed.time_ns == T0


def test_schema_gives_every_canonical_field_one_type() -> None:
    assert CANONICAL_TYPES["occupied"] is FieldType.BOOLEAN
    assert {k for k, t in CANONICAL_TYPES.items() if t is FieldType.INTEGER} == {"vehicle_count", "fcnt", "fcnt_gap",
                                                                                      "online_slot"}
    assert sorted(HEALTH_FIELDS) == ["battery_pct", "battery_v", "fcnt", "fcnt_gap", "humidity_pct", "reachable",
                                     "received", "rssi_dbm", "snr_db", "temperature_c", "time_source"]
    assert set(MEASUREMENTS) == {"noise", "dust", "bin_fill", "parking", "water_level", "device_health", "alerts"}
    kept, dropped = coerce_fields("alerts", {"value": 3, "from_state": "firing", "summary": 5})
    assert kept == {"value": 3.0, "from_state": "firing"} and dropped[0].field == "summary"
    assert [field_type("parking", "occupied"), field_type("parking", "vehicle_count"),
            field_type("water_level", "depth_mm"), field_type("alerts", "summary")] == [bool, int, float, str]
