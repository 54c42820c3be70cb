"""Rule state at scale: bucketed windows agree with exact ones, state is capped, bookkeeping is bounded."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from core.device import Device
from core.reading import Reading
from rules import engine as engine_module
from rules.engine import Engine
from rules.gate import RuleSet
from rules.loader import RuleError, load_rules
from rules.model import DEFAULT_BUCKETS
from rules.trend import theil_sen_slope
from rules.windows import entry_cap, make_window
from service.metrics import Metrics

S = 1_000_000_000
T0 = 1_720_000_000 * S

# (time offset in s from the previous sample, value); gaps from 1 s to 20 min, values of a dB or µg/m³ scale
samples_st = st.lists(st.tuples(st.integers(1, 1200), st.floats(20.0, 120.0)), min_size=1, max_size=150)


def exact(aggregate: str, held: list[tuple[int, float, float]]) -> float:
    """The textbook aggregate of (time_ns, value, weight_s) samples."""
    values = [v for _, v, _ in held]
    if aggregate == "max":
        return max(values)
    if aggregate == "min":
        return min(values)
    weight = math.fsum(w for _, _, w in held)
    if aggregate == "mean":
        return math.fsum(w * v for _, v, w in held) / weight
    return 10 * math.log10(math.fsum(w * 10 ** (v / 10) for _, v, w in held) / weight)  # laeq


def feed(aggregate: str, window_s: float, resolution_s: float, gaps: list[tuple[int, float]]):
    """Feed the samples as the engine does (weight = gap capped at 300 s); yields (window, history) after each."""
    w = make_window(aggregate, window_s, 2048, resolution_s=resolution_s)
    history: list[tuple[int, float, float]] = []
    t = T0
    for gap, value in gaps:
        t += gap * S
        weight = float(min(gap, 300)) if history else 300.0
        w.add(t, value, weight)
        history.append((t, value, weight))
        yield w, history


@pytest.mark.parametrize("aggregate", ["laeq", "mean", "max", "min"])
@pytest.mark.parametrize("window_s", [3600, 86400])
@settings(max_examples=40)
@given(gaps=samples_st)
def test_bucketed_windows_equal_exact_ones_up_to_one_resolution_at_the_window_start(aggregate, window_s, gaps):
    # rules/README.md, "Precision": a bucketed window counts the samples inside the window plus,
    # at most, the older samples of the oldest bucket it still holds (less than one resolution older)
    res_ns = window_s * S // DEFAULT_BUCKETS
    for w, history in feed(aggregate, window_s, window_s / DEFAULT_BUCKETS, gaps):
        cutoff = history[-1][0] - window_s * S
        inside = [x for x in history if x[0] > cutoff] or history[-1:]
        oldest_bucket = inside[0][0] // res_ns
        held = [x for x in history if x[0] // res_ns >= oldest_bucket]
        assert held[0][0] > cutoff - res_ns  # never more than one resolution older than the window
        assert w.value() == pytest.approx(exact(aggregate, held), rel=1e-9, abs=1e-9)
        assert w.count == len(held)
        if len(held) == len(inside):  # one sample per bucket at the edge: today's exact value
            assert w.value() == pytest.approx(exact(aggregate, inside), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("aggregate", ["laeq", "mean", "max"])
@given(gaps=st.lists(st.tuples(st.integers(-20, 20), st.floats(30.0, 100.0)), min_size=1, max_size=200))
def test_five_minute_reports_give_todays_hourly_values_exactly(aggregate, gaps):
    # the cadence cities use (5 min ± 20 s) never puts two reports in one 150-s bucket of an hour
    reports = [(300 + jitter, v) for jitter, v in gaps]
    unbucketed = make_window(aggregate, 3600, 2048)  # resolution 0: every sample its own entry
    for w, history in feed(aggregate, 3600, 150, reports):
        unbucketed.add(*history[-1])
        inside = [x for x in history if x[0] > history[-1][0] - 3600 * S]
        assert w.value() == unbucketed.value() == pytest.approx(exact(aggregate, inside), rel=1e-9)
        assert w.count == unbucketed.count == len(inside) == w.entries


@given(gaps=st.lists(st.tuples(st.integers(1, 900), st.floats(0.0, 400.0)), min_size=2, max_size=150),
       max_samples=st.integers(3, 64))
def test_trend_windows_give_theil_sen_of_exactly_the_points_in_the_window(gaps, max_samples):
    # trends keep their points (Theil–Sen needs them): the newest max_samples with time > newest − window
    w = make_window("slope", 900, max_samples)
    history: list[tuple[int, float]] = []
    t = T0
    for gap, value in gaps:
        t += gap * S
        w.add(t, value, 60.0)
        history.append((t, value))
        inside = [x for x in history if x[0] > t - 900 * S][-max_samples:]
        expected = theil_sen_slope([(x[0] - t) / S for x in inside], [x[1] for x in inside])
        got = w.value()
        assert (got is None) == (expected is None)
        if expected is not None:
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert w.entries == len(inside) <= max_samples


def fleet(interval_s: int = 300) -> list[Device]:
    kinds = ("noise", "dust", "bin_fill", "parking", "water_level")
    return [Device(id=f"{k}-{speed}", key=f"{k}-{speed}", model="acme", kind=k, expected_interval_s=interval_s,
                   site="cs-1" if k in ("noise", "dust") else "no-parking" if k == "parking" else "",
                   zone_class="2" if k == "noise" else "")
            for k in kinds for speed in ("ok", "fast")]


def fields(kind: str, x: float) -> dict:
    return {"noise": {"laeq_db": 50 + 20 * x, "lmax_db": 70 + 20 * x},
            "dust": {"pm10_ugm3": 60 + 100 * x, "pm2_5_ugm3": 30 + 60 * x},
            "bin_fill": {"fill_pct": 100 * x, "tilted": False},
            "parking": {"occupied": x > 0.5},
            "water_level": {"depth_mm": 300 * x}}[kind]


def test_a_device_reporting_100_times_too_often_holds_no_more_state_than_the_cap():
    rules = load_rules([])
    engine = Engine(rules)
    devices = fleet(interval_s=3600)  # hourly reporters (fewer readings to run than 5-minute ones)
    engine.set_devices(devices)
    hours = 25
    for i in range(hours * 100):  # every 36 s for 'fast' devices, every hour for the others
        t = T0 + i * 36 * S
        x = (i % 997) / 997
        for d in devices:
            if d.id.endswith("fast") or i % 100 == 0:
                engine.process(Reading(d.id, d.kind, t, fields(d.kind, x), d.tags(), {"battery_pct": 80.0}))
        engine.tick(t)
    checked = 0
    for rule in rules:
        if rule.is_no_data or rule.is_quality:
            continue  # the no-data rule: one heap entry per device; quality rules run beside the engine
        windows = {d.id: engine.window_of(rule.id, d.id) for d in devices}
        cap = entry_cap(rule.aggregate, rule.window_s, rule.max_samples, rule.resolution_s)
        for device_id, window in windows.items():
            if window is not None:
                assert window.entries <= cap, (rule.id, device_id)
                checked += device_id.endswith("fast")
        if rule.window_s == 86400:  # a full day seen: hourly buckets for both, so about the same memory
            ok, fast = windows["dust-ok"], windows["dust-fast"]
            assert ok is not None and fast is not None
            assert (ok.entries, fast.entries) == (24, 25)  # 24 reports; 24 h + the partial hour
            # (plus what an array over-allocates)
            assert fast.nbytes() <= 1.25 * ok.nbytes()
    assert checked >= 12
    # 100× the readings, but the 24-hour windows hold their 25 hourly buckets, not 2,400 samples
    pm10_24h = engine.window_of("dust.pm10_24h", "dust-fast")
    assert pm10_24h is not None
    assert 2400 <= pm10_24h.count < 2500  # (and up to an hour older: the oldest bucket leaves whole)
    assert pm10_24h.entries == 24 + 1


FLAPPING = """
[[rule]]
id = "deep"
kind = "water_level"
field = "depth_mm"
op = ">="
threshold = 150
for = "10m"
keep_firing_for = "10m"
"""


def test_the_due_heap_keeps_one_live_entry_per_rule_and_device_and_drops_superseded_ones(tmp_path: Path):
    # every reading starts or ends a pending `for`: without compaction each one left an entry behind
    path = tmp_path / "flap.toml"
    path.write_text(FLAPPING, encoding="utf-8")
    engine = Engine(load_rules([path], include_presets=False))
    devices = [Device(id=f"w{i}", key=f"w{i}", model="acme", kind="water_level", expected_interval_s=60)
               for i in range(20)]
    engine.set_devices(devices)
    for minute in range(600):
        for d in devices:
            engine.process(Reading(d.id, "water_level", T0 + minute * 60 * S,
                                   {"depth_mm": 200.0 if minute % 2 else 100.0}, d.tags()))
    def is_live(e: tuple) -> bool:  # (due_ns, rule index, row, device id): the machine still waits for it
        machine = engine._compiled[e[1]].active.get(e[2])
        return machine is not None and machine.due_ns == e[0]

    live = [e for e in engine._due if is_live(e)]
    assert len({(e[1], e[2]) for e in live}) == len(live) <= len(devices)
    assert engine.due_entries <= 2 * len(devices) + 256  # 6,000 pending starts, not 6,000 entries
    # and time still moves the live ones: each device's last pending `for` fires
    fired = engine.tick(T0 + 620 * 60 * S)
    assert sorted(t.device_id for t in fired) == sorted(d.id for d in devices)


def test_metrics_expose_rule_state_entries_and_bytes_by_rule():
    engine = Engine(load_rules([]))
    devices = fleet()
    engine.set_devices(devices)
    for i in range(48):
        for d in devices:
            engine.process(Reading(d.id, d.kind, T0 + i * 300 * S, fields(d.kind, 0.2), d.tags(),
                                   {"battery_pct": 80.0}))
    metrics = Metrics()
    metrics.observe_rule_state(engine.state_stats(), engine.due_entries)
    text = generate_latest(metrics.registry).decode()
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
               if line.startswith("urbansense_rule_")}
    # 4 hours of 5-minute reports: an hourly LAeq holds 12 samples in 12 buckets, per noise device
    assert samples['urbansense_rule_state_states{rule="noise.zone_limit"}'] == 2
    assert samples['urbansense_rule_state_entries{rule="noise.zone_limit"}'] == 2 * 12
    assert samples['urbansense_rule_state_entries{rule="dust.pm10_24h"}'] == 2 * 5  # 4 h: 4 or 5 hourly buckets
    assert 2 * 12 * 32 < samples['urbansense_rule_state_bytes{rule="noise.zone_limit"}'] < 2 * 4096
    assert samples['urbansense_rule_state_states{rule="device.silent"}'] == len(devices)
    assert samples['urbansense_rule_state_states{rule="(devices)"}'] == len(devices)  # routes and slots
    # readings far below every limit: no rule holds an alert machine object
    assert samples['urbansense_rule_state_active{rule="noise.zone_limit"}'] == 0
    assert sum(v for k, v in samples.items() if k.startswith("urbansense_rule_state_active")) == 0
    assert "urbansense_rule_due_entries" in samples


RESOLUTION = """
[[rule]]
id = "pm10"
kind = "dust"
field = "pm10_ugm3"
aggregate = "{aggregate}"
window = "24h"
{extra}
op = ">="
threshold = 150
"""


def test_resolution_defaults_to_a_24th_of_the_window_and_is_checked(tmp_path: Path):
    def load(aggregate: str, extra: str = ""):
        path = tmp_path / "r.toml"
        path.write_text(RESOLUTION.format(aggregate=aggregate, extra=extra), encoding="utf-8")
        return load_rules([path], include_presets=False)

    assert load("mean")[0].resolution_s == 3600
    assert load("laeq", 'resolution = "15m"')[0].resolution_s == 900
    assert load("slope")[0].resolution_s == 0  # trends keep their points
    with pytest.raises(RuleError, match="keeps every point") as info:
        load("slope", 'resolution = "1h"')
    assert info.value.key == "resolution"
    with pytest.raises(RuleError, match="at most the window"):
        load("mean", 'resolution = "25h"')


@pytest.mark.parametrize("aggregate", ["mean", "laeq", "max", "slope"])
def test_windows_give_the_same_values_after_their_time_base_moves(aggregate):
    # entries keep times as float offsets from a base per row, exact integers below 2**53 ns; the base
    # moves once an offset reaches 2**52 ns (52 days): a device reporting for months, or back after a silence
    year = 365 * 86400 * S
    reports = [(T0 + k * 97 * S + (k % 7), 40.0 + (k * 37 % 23)) for k in range(60)]
    later = [(t + year, v) for t, v in reports]
    moved = make_window(aggregate, 3600, 64, resolution_s=0.0)
    moved.add(T0 - 200 * 86400 * S, 55.0, 300.0)  # a sample 200 days before: the base is far behind
    fresh = make_window(aggregate, 3600, 64)
    for t, v in reports:
        moved.add(t, v, 97.0)
        fresh.add(t, v, 97.0)
        assert moved.value() == fresh.value()
    for t, v in later:  # a year later still: the base moves again
        moved.add(t, v, 97.0)
    fresh2 = make_window(aggregate, 3600, 64)
    for t, v in later:
        fresh2.add(t, v, 97.0)
    assert moved.value() == fresh2.value()
    assert moved.count == fresh2.count


def test_state_that_is_usually_empty_holds_no_objects():
    # alert machines exist only while pending or firing, quality runs only while failures count
    rs = RuleSet(load_rules([]))
    devices = fleet()
    rs.set_devices(devices)
    for i in range(24):
        for d in devices:
            f = {**fields(d.kind, 0.2), "quality": "good"}
            if d.id == "dust-fast" and i == 3:
                f.update(quality="bad", quality_check="spike")
            rs.process(Reading(d.id, d.kind, T0 + i * 300 * S, f, d.tags(), {"battery_pct": 80.0}))
    assert not any(c.active for c in rs.engine._compiled)
    spikes = next(w for w in rs.watches if w.rule.id == "quality.spikes")
    assert list(spikes._runs) == []  # the one spike left the hour: nothing counts any more
    # one device's readings cross a limit: its machine, and only its, exists while it fires
    t = T0 + 24 * 300 * S
    rs.process(Reading("water_level-ok", "water_level", t, {"depth_mm": 300.0, "quality": "good"},
                       (("device_id", "water_level-ok"),)))
    assert [(c.rule.id, len(c.active)) for c in rs.engine._compiled if c.active] == [("water.depth", 1)]


SHARED_RULES = """
[[rule]]
id = "pm10.mean"
kind = "dust"
field = "pm10_ugm3"
aggregate = "mean"
window = "1h"
min_coverage = "20m"
op = ">"
threshold = 100
keep_firing_for = "10m"

[[rule]]
id = "pm25.mean"
kind = "dust"
field = "pm2_5_ugm3"
aggregate = "mean"
window = "1h"
min_coverage = "20m"
op = ">"
threshold = 50
for = "5m"

[[rule]]
id = "pm10.laeq_like"
kind = "dust"
field = "pm10_ugm3"
aggregate = "laeq"
window = "30m"
resolution = "5m"
op = ">"
threshold = 90

[[rule]]
id = "pm25.laeq_like"
kind = "dust"
field = "pm2_5_ugm3"
aggregate = "laeq"
window = "30m"
resolution = "5m"
op = ">"
threshold = 45
"""

# (seconds since the previous reading, pm10, pm2.5 or None: missing, or NaN); now and then a clock jump back
# or ahead (60 days: the windows' time base moves)
shared_st = st.lists(st.tuples(st.one_of(st.integers(1, 1200), st.sampled_from([-7200, 60 * 86400])),
                               st.floats(0.0, 200.0),
                               st.one_of(st.floats(0.0, 100.0), st.none(), st.just(math.nan))),
                     min_size=1, max_size=120)


_loaded: list = []


def shared_rules(tmp_path: Path) -> list:
    if not _loaded:
        path = tmp_path / "shared.toml"
        path.write_text(SHARED_RULES)
        _loaded.extend(load_rules([path], include_presets=False))
    return _loaded


def run_both(tmp_path: Path, monkeypatch, readings, states_every: int = 1) -> Engine:
    """Feed the same readings to an engine whose rules share buckets and to one whose rules do not; compare
    every transition and (every `states_every` readings) every state bit for bit. Returns the sharing engine."""
    rules = shared_rules(tmp_path)
    devices = [Device(id=f"d{i}", key=f"d{i}", model="acme", kind="dust") for i in range(2)]
    shared = Engine(rules)
    monkeypatch.setattr(engine_module, "_share_windows", lambda compiled: None)
    alone = Engine(rules)
    monkeypatch.undo()
    assert shared._by_id["pm25.mean"].group is not None and alone._by_id["pm25.mean"].group is None
    for e in (shared, alone):
        e.set_devices(devices)
    for n, (device_id, t, f) in enumerate(readings):
        got = shared.process(Reading(device_id, "dust", t, dict(f), ()))
        want = alone.process(Reading(device_id, "dust", t, dict(f), ()))
        assert got == want
        assert shared.tick(t + 30 * S) == alone.tick(t + 30 * S)
        if n % states_every == 0 or n == len(readings) - 1:
            for rule in rules:
                a, b = shared.state_of(rule.id, device_id), alone.state_of(rule.id, device_id)
                assert a == b or (a is not None and b is not None and repr(a) == repr(b))  # (NaN != NaN)
    return shared


@settings(max_examples=60, deadline=None)
@given(steps=shared_st)
def test_rules_sharing_buckets_give_the_same_values_and_transitions_as_rules_on_their_own(tmp_path_factory, steps):
    # a dust sensor's PM10 and PM2.5 means over the same window keep one set of buckets (rules/shared_windows.py);
    # a reading missing one field, a clock jumping back or far ahead must not change a single value
    monkeypatch = pytest.MonkeyPatch()
    t = T0
    readings = []
    for i, (gap, pm10, pm25) in enumerate(steps):
        t += gap * S
        f: dict = {"pm10_ugm3": pm10}
        if pm25 is not None:
            f["pm2_5_ugm3"] = pm25
        readings.append((f"d{i % 2}", t, f))
    try:
        run_both(tmp_path_factory.mktemp("shared"), monkeypatch, readings)
    finally:
        monkeypatch.undo()


def test_rules_sharing_buckets_stay_identical_across_the_exact_re_summing(tmp_path: Path, monkeypatch):
    # running sums are re-added exactly every 4,096 samples: 9,000 readings, 1-20 s apart, some without PM2.5 late on
    rng = random.Random(7)
    t = T0
    readings = []
    for i in range(9000):
        t += rng.randint(1, 20) * S
        f = {"pm10_ugm3": rng.uniform(0, 200)}
        if i < 8500 or rng.random() < 0.9:
            f["pm2_5_ugm3"] = rng.uniform(0, 100)
        readings.append(("d0", t, f))
    shared = run_both(tmp_path, monkeypatch, readings[:8500], states_every=97)
    group = shared._by_id["pm25.mean"].group
    assert group is not None and not group.is_split(0)  # shared through two re-summings
    assert shared.window_of("pm25.mean", "d0").entries == shared.window_of("pm10.mean", "d0").entries > 0  # type: ignore[union-attr]
    shared = run_both(tmp_path, monkeypatch, readings, states_every=97)
    assert shared._by_id["pm25.mean"].group.is_split(0)  # type: ignore[union-attr]  # a reading without PM2.5
