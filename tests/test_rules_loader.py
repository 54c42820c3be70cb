"""Rule files: the presets load, a city file overrides them, and every error names file, rule and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.transition import Severity
from rules.loader import PRESETS_DIR, RuleError, check_rules, load_rules, preset_files

BASE = """
[[rule]]
id = "deep"
kind = "water_level"
field = "depth_mm"
op = ">="
threshold = 150
"""


def write(tmp_path: Path, text: str, name: str = "city.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> RuleError:
    with pytest.raises(RuleError) as info:
        load_rules([write(tmp_path, text)], include_presets=False)
    return info.value


def test_the_presets_load_without_errors_or_warnings_and_cover_the_five_kinds():
    report = check_rules([])
    assert report.errors == [] and report.warnings == []
    kinds = {k for r in report.rules if r.select.kinds for k in r.select.kinds}
    assert kinds == {"noise", "dust", "bin_fill", "parking", "water_level"}
    ids = {r.id for r in report.rules}
    assert {"water.depth", "water.rising", "noise.zone_limit", "noise.night_lmax", "dust.pm10_24h", "bin.full",
            "bin.overflow", "parking.no_parking_zone", "device.silent", "device.battery_low"} <= ids
    assert "noise.construction" not in ids  # shipped switched off


def test_every_preset_file_cites_its_source():
    for path in preset_files():
        comments = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
        assert any("Source" in line for line in comments), path.name


def test_the_water_preset_has_the_domain_numbers():
    (rule,) = [r for r in load_rules([]) if r.id == "water.depth"]
    assert [(lv.severity, lv.threshold.resolve("*", "*"), lv.route) for lv in rule.levels] == [
        (Severity.WARNING, 150, "case"), (Severity.CRITICAL, 270, "emergency")]
    assert rule.clear.resolve("*", "*") == 120 and rule.keep_firing_for_s == 600


def test_a_city_file_overrides_a_preset_by_id_and_can_switch_one_off(tmp_path):
    city = write(tmp_path, BASE.replace('"deep"', '"water.depth"').replace("150", "100")
                 + '\n[[rule]]\nid = "bin.full"\nenabled = false\n')
    rules = {r.id: r for r in load_rules([city])}
    assert rules["water.depth"].levels[0].threshold.resolve("*", "*") == 100
    assert rules["water.depth"].source == str(city)
    assert "bin.full" not in rules and "bin.overflow" in rules


def test_presets_can_be_left_out(tmp_path):
    assert [r.id for r in load_rules([write(tmp_path, BASE)], include_presets=False)] == ["deep"]


@pytest.mark.parametrize(("text", "rule", "key", "words"), [
    (BASE + "keep_firing_fro = \"5m\"\n", "deep", "keep_firing_fro", "did you mean 'keep_firing_for'"),
    (BASE + "window = \"15 minutes\"\n", "deep", "window", "duration"),
    (BASE.replace('op = ">="', 'op = "=>"'), "deep", "op", "one of"),
    (BASE.replace('field = "depth_mm"\n', ""), "deep", "field", "required"),
    (BASE + 'aggregate = "avg"\n', "deep", "aggregate", "must be one of"),
    (BASE + 'aggregate = "mean"\n', "deep", "window", "needs a window"),
    (BASE + "clear = 200\n", "deep", "clear", "quiet side"),
    (BASE + 'schedule = { day = "06:00-22:00", night = "21:00-06:00" }\n', "deep", "schedule.night", "overlaps"),
    (BASE + 'schedule = { day = "6h-22h" }\n', "deep", "schedule.day", "06:00"),
    (BASE.replace("threshold = 150", 'threshold = { "5" = 50 }'), "deep", "threshold.5", "not a zone class"),
    (BASE.replace("threshold = 150", "threshold = { dusk = 50 }") + 'schedule = { day = "06:00-22:00" }\n',
     "deep", "threshold.dusk", "not a period"),
    (BASE + 'severity = "urgent"\n', "deep", "severity", "info, warning, critical"),
    (BASE + 'timezone = "Mars/Olympus"\n', "deep", "timezone", "unknown time zone"),
    (BASE + "for_samples = 0\n", "deep", "for_samples", "at least 1"),
    (BASE + 'aggregate = "eta"\nwindow = "15m"\n', "deep", "target", "value to reach"),
    (BASE + "target = 270\n", "deep", "target", "only for aggregate 'eta'"),
    (BASE + 'eta = { target = 270, window = "forever" }\n', "deep", "eta.window", "duration"),
    (BASE + 'select = { zone = "2" }\n', "deep", "select.zone", "did you mean 'zone_class'"),
    (BASE + "labels = { case_category = 6010 }\n", "deep", "labels.case_category", "string"),
    ('[[rule]]\nid = "quiet"\nkind = "*"\nno_data = { factor = 3 }\nthreshold = 5\n', "quiet", "threshold",
     "not allowed in a no_data rule"),
    ('[[rule]]\nid = "Bad Id"\n', None, "id", "lowercase"),
    (BASE.replace("op = \">=\"\nthreshold = 150", 'op = ">="\n[[rule.levels]]\nseverity = "critical"\n'
                  'threshold = 100\n[[rule.levels]]\nseverity = "warning"\nthreshold = 150'),
     "deep", "levels", "critical threshold 100 must be above the warning threshold 150"),
])
def test_errors_name_file_rule_and_key(tmp_path, text, rule, key, words):
    err = error_of(tmp_path, text)
    assert err.file.endswith("city.toml")
    assert err.key == key
    if rule is not None:
        assert err.rule_id == rule
    message = str(err)
    assert "city.toml" in message and repr(key) in message and words in message
    if rule is not None:
        assert repr(rule) in message


def test_toml_syntax_errors_and_missing_files_name_the_file(tmp_path):
    err = error_of(tmp_path, "[[rule]\nid = 1\n")
    assert "city.toml" in str(err) and "TOML syntax error" in str(err)
    with pytest.raises(RuleError, match=re.escape("nope.toml: rule -: key -: no such file")):
        load_rules([tmp_path / "nope.toml"], include_presets=False)


def test_a_rule_without_id_is_named_by_its_position(tmp_path):
    err = error_of(tmp_path, BASE + '\n[[rule]]\nkind = "noise"\n')
    assert err.rule_id == "#2 (no id)" and err.key == "id"


def test_check_collects_every_error_across_files(tmp_path):
    a = write(tmp_path, BASE + "bogus = 1\n", "a.toml")
    b = write(tmp_path, BASE + BASE + '\n[[rule]]\nid = "x"\nkind = "noise"\n', "b.toml")
    report = check_rules([a, b], include_presets=False)
    where = [(Path(e.file).name, e.rule_id, e.key) for e in report.errors]
    assert where == [("a.toml", "deep", "bogus"), ("b.toml", "deep", "id"), ("b.toml", "x", "field")]


def test_a_likely_typo_of_a_canonical_field_is_a_warning(tmp_path):
    report = check_rules([write(tmp_path, BASE.replace("depth_mm", "depth_mn"))], include_presets=False)
    assert report.errors == []
    assert any("depth_mn" in w and "did you mean 'depth_mm'" in w for w in report.warnings)


def test_presets_dir_is_part_of_the_package():
    assert (PRESETS_DIR / "__init__.py").exists()


def test_preset_case_categories_exist_in_the_alerts_category_table():
    import tomllib

    table = tomllib.loads((PRESETS_DIR.parents[1] / "alerts" / "case_categories.toml").read_text(encoding="utf-8"))
    used = {dict(r.labels).get("case_category") for r in check_rules([]).rules} - {None}
    assert used and used <= set(table["categories"])
