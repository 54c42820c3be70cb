"""Import sheet headers: the canonical columns and the Chinese and English names technicians' sheets use.

A header cell is matched after NFKC normalisation (full-width letters and brackets become
ASCII), lower-casing, and removing spaces, '_', '-' and a unit in brackets: `纬度`, `Latitude`,
`lat`, `安装高度（mm）` and `mount_height_mm` all name a column. `DevEUI` and `IMEI` columns both
fill `key`; a sheet may have both, one filled per row. The table is documented in
provisioning/README.md ("Import sheets").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

COLUMNS: tuple[str, ...] = ("id", "key", "model", "latitude", "longitude", "address", "district", "street",
                            "zone_class", "site", "mount_height_mm", "bin_depth_mm", "dead_zone_mm",
                            "expected_interval_s", "status")
REQUIRED: tuple[str, ...] = ("id", "key", "model")

ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("设备编号", "设备id", "编号", "device", "deviceid", "device_id"),
    "key": ("deveui/imei", "deveui", "dev_eui", "eui", "imei", "设备eui", "设备标识", "终端标识", "key"),
    "model": ("型号", "设备型号", "产品型号", "model"),
    "latitude": ("纬度", "lat", "latitude"),
    "longitude": ("经度", "lon", "lng", "long", "longitude"),
    "address": ("地址", "安装地址", "安装位置", "位置", "address"),
    "district": ("区", "行政区", "所属区", "区县", "所属区县", "district"),
    "street": ("街道", "所属街道", "街道办", "street"),
    "zone_class": ("声环境功能区", "功能区", "功能区类别", "声功能区", "zone", "zoneclass"),
    "site": ("站点", "工地", "场所", "site"),
    "mount_height_mm": ("安装高度", "mountheight", "mount_height"),
    "bin_depth_mm": ("桶深", "垃圾桶深度", "bindepth", "bin_depth"),
    "dead_zone_mm": ("盲区", "deadzone", "dead_zone"),
    "expected_interval_s": ("上报间隔", "上报周期", "interval", "interval_s", "expected_interval"),
    "status": ("状态", "设备状态", "status"),
}
"""Canonical column → other names accepted in a header (compared after `header_key`)."""

KEY_KINDS = {"deveui": "DevEUI", "dev_eui": "DevEUI", "eui": "DevEUI", "设备eui": "DevEUI", "imei": "IMEI"}

STATUS_ALIASES = {"在用": "active", "启用": "active", "正常": "active", "运行": "active", "维护": "maintenance",
                  "维修": "maintenance", "检修": "maintenance", "停用": "retired", "报废": "retired",
                  "退役": "retired", "拆除": "retired"}
"""Chinese status words → the registry's status."""

TEMPLATE_ZH: dict[str, str] = {
    "id": "设备编号", "key": "DevEUI/IMEI", "model": "型号", "latitude": "纬度", "longitude": "经度", "address": "地址",
    "district": "区", "street": "街道", "zone_class": "声环境功能区", "site": "站点", "mount_height_mm": "安装高度(mm)",
    "bin_depth_mm": "桶深(mm)", "dead_zone_mm": "盲区(mm)", "expected_interval_s": "上报间隔(s)", "status": "状态"}
"""The Chinese header `device template --lang zh` writes (each an alias above)."""

TEMPLATE_EXAMPLE: dict[str, str] = {
    "id": "WL-CY-001", "key": "24E124713C210001", "model": "milesight-em500-udl", "latitude": "39.9219",
    "longitude": "116.4436", "address": "建国路 88 号", "district": "朝阳区", "street": "建外街道", "zone_class": "",
    "site": "", "mount_height_mm": "2000", "bin_depth_mm": "", "dead_zone_mm": "", "expected_interval_s": "300",
    "status": "active"}
"""The example row of `device template`: a waterlogging sensor, valid as it stands."""

_UNIT = re.compile(r"\(.*?\)$")


def header_key(cell: str) -> str:
    """A header cell reduced to what is compared: NFKC, lower case, no spaces/'_'/'-', no unit in brackets."""
    text = unicodedata.normalize("NFKC", cell).strip().lstrip("\ufeff").lower()
    text = _UNIT.sub("", text.replace("【", "(").replace("】", ")").replace("[", "(").replace("]", ")"))
    return re.sub(r"[\s_\-]", "", text)


_LOOKUP: dict[str, str] = {}
for _col, _names in ALIASES.items():
    for _name in (_col, *_names):
        _LOOKUP.setdefault(header_key(_name), _col)


@dataclass(frozen=True, slots=True)
class Column:
    """One header cell as read: its text in the file, its position and the canonical column it fills."""

    label: str
    index: int
    name: str


class HeaderError(ValueError):
    """The header names unknown, missing or repeated columns; the message lists the accepted names."""


def map_header(cells: Sequence[str]) -> list[Column]:
    """The columns of a header row (empty trailing cells ignored); `HeaderError` naming every problem."""
    columns: list[Column] = []
    unknown: list[str] = []
    for i, cell in enumerate(cells):
        if not cell.strip():
            continue
        name = _LOOKUP.get(header_key(cell))
        if name is None:
            unknown.append(cell.strip())
        else:
            columns.append(Column(cell.strip(), i, name))
    names = [c.name for c in columns]
    missing = [n for n in REQUIRED if n not in names]
    doubled = sorted({c.label for c in columns if names.count(c.name) > 1
                      and not (c.name == "key" and _key_kinds_distinct(columns))})
    if unknown or missing or doubled:
        parts = ([f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"missing column(s) {', '.join(f'{m} ({ALIASES[m][0]})' for m in missing)}"] if missing else []) + \
                ([f"columns naming the same field: {', '.join(doubled)}"] if doubled else [])
        raise HeaderError(f"header: {'; '.join(parts)}; the columns are: {','.join(COLUMNS)} "
                          "(Chinese names such as 设备编号, 型号, 纬度 are accepted: see `urbansense device template`)")
    return columns


def _key_kinds_distinct(columns: Sequence[Column]) -> bool:
    """A DevEUI column and an IMEI column may both fill `key` (one per row); two DevEUI columns may not."""
    kinds = [KEY_KINDS.get(header_key(c.label), "key") for c in columns if c.name == "key"]
    return len(kinds) == len(set(kinds)) == 2 and "key" not in kinds


def label_of(columns: Sequence[Column], name: str) -> str:
    """How the file calls a canonical column, for messages: `纬度 (latitude)`, or just `latitude`."""
    for c in columns:
        if c.name == name:
            return name if header_key(c.label) == header_key(name) else f"{c.label} ({name})"
    return name
