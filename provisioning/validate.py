"""Validation of one device's fields before anything is written: every problem names its field and the accepted form.

The same rules serve `device add`, `device update`, `device move` and every row of `device import`;
input values may be strings (CSV cells) or numbers (CLI options). Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.controls import bad_character
from core.device import STATUSES, ZONE_CLASSES, Device
from core.keys import DeviceKeyError, normalise_key
from core.kinds import INSTALL_PARAMS as INSTALL_PARAM_SPECS
from core.kinds import USED_BY
from decoders import UnknownModel, get_model

Raw = Mapping[str, str | float | int | None]

_ID = re.compile(r"[\w.\-:]{1,64}")
MAX_TEXT = 200

PLAUSIBLE_MM: dict[str, tuple[float, float]] = {p.name: (p.lo, p.hi) for p in INSTALL_PARAM_SPECS.values()}
"""Install parameters: the range a real installation falls in (from `core.kinds`)."""

INSTALL_PARAMS: tuple[str, ...] = tuple(INSTALL_PARAM_SPECS)
INTERVAL_RANGE_S = (10, 7 * 24 * 3600)


@dataclass(frozen=True, slots=True)
class Problem:
    """One refused field: `field` is the CSV column / option name, `message` what is accepted."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidDevice(ValueError):
    """A device that cannot be written; `problems` lists every refused field."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


BBox = tuple[float, float, float, float]


def _text(raw: Raw, name: str) -> str:
    value = raw.get(name)
    return "" if value is None else str(value).strip()


def _number(raw: Raw, name: str, problems: list[Problem], form: str) -> float | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(Problem(name, f"{value!r} is not a number; expected {form}"))
        return None
    if not math.isfinite(number):
        problems.append(Problem(name, f"{value!r} is not a finite number; expected {form}"))
        return None
    return number


def _position(raw: Raw, problems: list[Problem], bbox: BBox | None) -> tuple[float | None, float | None]:
    before = len(problems)
    lat = _number(raw, "latitude", problems, "decimal degrees -90 to 90, e.g. 39.9219")
    lon = _number(raw, "longitude", problems, "decimal degrees -180 to 180, e.g. 116.4436")
    if lat is not None and not -90 <= lat <= 90:
        problems.append(Problem("latitude", f"{lat} is out of range; expected -90 to 90 degrees"))
        lat = None
    if lon is not None and not -180 <= lon <= 180:
        problems.append(Problem("longitude", f"{lon} is out of range; expected -180 to 180 degrees"))
        lon = None
    if (lat is None) != (lon is None) and len(problems) == before:
        missing = "longitude" if lon is None else "latitude"
        problems.append(Problem(missing, "latitude and longitude go together; give both or neither"))
    if lat is not None and lon is not None and bbox:
        min_lon, min_lat, max_lon, max_lat = bbox
        if not (min_lon <= lon <= max_lon and min_lat <= lat <= max_lat):
            problems.append(Problem("latitude/longitude", f"({lat}, {lon}) is outside the city's bounding box "
                                    f"lat {min_lat}..{max_lat}, lon {min_lon}..{max_lon} "
                                    "(provisioning.bbox in the config); were they swapped?"))
    return lat, lon


def _install(raw: Raw, kind: str, model: str, needs: Sequence[str], model_dead_zone: float,
             problems: list[Problem]) -> dict[str, float]:
    install: dict[str, float] = {}
    for name, (lo, hi) in PLAUSIBLE_MM.items():
        value = _number(raw, name, problems, f"millimetres {lo:g} to {hi:g}")
        if value is None:
            continue
        if kind not in USED_BY[name]:
            problems.append(Problem(name, f"not used by {kind} sensors ({model}); leave it empty"))
        elif not lo <= value <= hi:
            problems.append(Problem(name, f"{value:g} mm is not plausible; expected {lo:g} to {hi:g} mm"))
        else:
            install[name] = value
    for name in needs:
        if name not in install and not any(p.field == name for p in problems):
            flag = "--" + name.replace("_", "-")
            problems.append(Problem(name, f"model {model} ({kind}) needs it: millimetres, e.g. {flag} 2000"))
    dead_zone = install.get("dead_zone_mm", model_dead_zone)
    for name in ("mount_height_mm", "bin_depth_mm"):
        if name in install and install[name] <= dead_zone:
            problems.append(Problem(name, f"{install[name]:g} mm is inside the sensor's dead zone ({dead_zone:g} mm);"
                                    " expected more than that"))
    return install


def _interval(raw: Raw, problems: list[Problem]) -> int:
    lo, hi = INTERVAL_RANGE_S
    value = _number(raw, "expected_interval_s", problems, f"whole seconds {lo} to {hi}")
    if value is None:
        return 300
    if value != int(value) or not lo <= value <= hi:
        problems.append(Problem("expected_interval_s", f"{value:g} is not plausible; expected whole seconds "
                                f"{lo} to {hi}"))
        return 300
    return int(value)


def check_device(raw: Raw, *, bbox: BBox | Sequence[float] | None = None) -> Device:
    """A `Device` from raw field values, or `InvalidDevice` listing every refused field.

    Keys of `raw` are the CSV columns (id, key, model, latitude, ... status); missing or
    empty ones take their defaults. The model fixes the kind and which install parameters
    are needed.
    """
    problems: list[Problem] = []
    box: BBox | None = tuple(bbox) if bbox else None  # type: ignore[assignment]
    device_id = _text(raw, "id")
    if not _ID.fullmatch(device_id):
        problems.append(Problem("id", f"{device_id!r}: expected 1-64 letters, digits, '_', '-', '.' or ':', "
                                "no spaces, e.g. WL-CY-001"))
    key = _text(raw, "key")
    try:
        key = normalise_key(key)
    except DeviceKeyError as exc:
        problems.append(Problem("key", str(exc)))
    model_id = _text(raw, "model")
    info = None
    try:
        info = get_model(model_id)
    except UnknownModel as exc:
        problems.append(Problem("model", f"{exc} (see `urbansense models`)" if model_id
                                else "required: a model id from `urbansense models`"))
    lat, lon = _position(raw, problems, box)
    texts = {name: _text(raw, name) for name in ("address", "district", "street", "site")}
    for name, value in texts.items():
        bad = bad_character(str(raw.get(name) or ""))  # before stripping: a leading tab is refused, not dropped
        if bad:
            problems.append(Problem(name, f"contains {bad}: expected one line of plain text"))
        elif len(value) > MAX_TEXT:
            problems.append(Problem(name, f"expected one line of at most {MAX_TEXT} characters"))
    zone = _text(raw, "zone_class").lower()
    if zone and zone not in ZONE_CLASSES:
        problems.append(Problem("zone_class", f"{zone!r} is not a GB 3096 zone class; expected one of "
                                f"{', '.join(ZONE_CLASSES)}"))
    elif not zone and info is not None and info.kind == "noise":
        problems.append(Problem("zone_class", f"noise sensors need their GB 3096 zone class: one of "
                                f"{', '.join(ZONE_CLASSES)}"))
    install: dict[str, float] = {}
    if info is not None:
        install = _install(raw, info.kind, info.model, info.install_params, info.dead_zone_mm, problems)
    interval = _interval(raw, problems)
    status = _text(raw, "status").lower() or "active"
    if status not in STATUSES:
        problems.append(Problem("status", f"{status!r}: expected one of {', '.join(STATUSES)}"))
    if problems or info is None:
        raise InvalidDevice(problems)
    return Device(id=device_id, key=key, model=info.model, kind=info.kind, latitude=lat, longitude=lon,
                  zone_class=zone, install=install, expected_interval_s=interval, status=status, **texts)


def device_raw(device: Device) -> dict[str, str | float | int | None]:
    """A device as raw fields (the inverse of `check_device`): the base an update's changes are laid over."""
    raw: dict[str, str | float | int | None] = {
        "id": device.id, "key": device.key, "model": device.model, "latitude": device.latitude,
        "longitude": device.longitude, "address": device.address, "district": device.district,
        "street": device.street, "zone_class": device.zone_class, "site": device.site,
        "expected_interval_s": device.expected_interval_s, "status": device.status,
    }
    for name in INSTALL_PARAMS:
        raw[name] = device.install.get(name)
    return raw
