"""Device models defined by a TOML file (and optionally a TS013 codec beside it), no Python needed.

A definition names the model, its kind and vendor, where its values come from, and maps
source paths to canonical fields:

    model = "acme-wl100"                     # lowercase letters, digits and '-'
    kind = "water_level"                     # one of decoders.model_info.KINDS
    vendor = "acme"
    input = ["object"]                       # "object": the network server's / platform's decoded
                                             # object; "bytes": the payload through `codec`; in order
                                             # of preference when an uplink carries both
    codec = "acme-wl100.js"                  # TS013 decodeUplink beside this file (needed for "bytes")
    reference = "where the field names and units come from"
    install_params = ["mount_height_mm"]     # what the kind's derivation needs (depth from distance)
    dead_zone_mm = 200

    [fields]
    distance_mm = { path = "distance", unit = "cm", range = [0, 5000] }
    battery_v = { path = "battery", scale = 0.001 }          # mV → V
    acme_status = { path = "state.code", type = "int" }      # vendor extra: <vendor>_ prefix

    [example]                                # checked by `urbansense models check`
    object = { distance = 123.4, battery = 3600 }
    expect = { distance_mm = 1234.0, battery_v = 3.6 }

`load_definition(path)` returns the `ModelInfo` or raises `DefinitionError` listing every
mistake as `file: key: reason`, worded like configuration errors.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from core.config import Section
from core.kinds import KINDS as KIND_SPECS
from core.schema import HEALTH_FIELDS, MEASUREMENTS
from core.validation import describe_error
from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.engines.js import DEFAULT_MEMORY_LIMIT, DEFAULT_TIME_LIMIT_S, ENGINES, JsCodec, short
from decoders.errors import EncodeUnsupported
from decoders.fields import canonical_type
from decoders.model_info import KINDS, ModelInfo
from decoders.units import conversion

_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}
_TYPE_NAMES = {float: "float", int: "int", bool: "bool", str: "str"}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"[^.\[\]]+(\[\d+\])*(\.[^.\[\]]+(\[\d+\])*)*")
_NAME_FORMS = {
    "model": (re.compile(r"[a-z0-9][a-z0-9-]{1,62}"), "lowercase letters, digits and '-', e.g. acme-wl100"),
    "vendor": (re.compile(r"[a-z][a-z0-9]{0,31}"), "lowercase letters and digits, e.g. acme"),
    "codec": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.js"), "the name of a .js file beside the definition, "
                                                              "e.g. acme-wl100.js"),
}
_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})


class DefinitionError(ValueError):
    """A definition file that cannot be used; `problems` are `key: reason` lines, all of them."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__(f"{path}: " + f"\n{path}: ".join(problems))


class FieldDef(Section):
    """One canonical (or `<vendor>_`) field: where it is in the source and how to convert it."""

    path: str = Field(min_length=1, description="dotted path in the object or codec data, e.g. a.b[0].c; an IPSO "
                                                "id 3330/0/5700 also finds OneNET's 3330_0_5700")
    unit: str | None = Field(None, description="the source's unit, converted to the field's canonical unit")
    scale: float | None = Field(None, description="multiply the source value by this")
    offset: float = Field(0.0, description="then add this")
    type: Literal["float", "int", "bool", "str"] | None = None
    range: list[float] | None = Field(None, description="[min, max] after conversion; outside → warning, dropped")
    values: dict[str, float | int | bool | str] | None = Field(None, description="source text → value")

    @field_validator("path")
    @classmethod
    def _path_shape(cls, v: str) -> str:
        if not _PATH.fullmatch(v):
            raise ValueError("expected a dotted path like LAeq, data.level or streams[0].value")
        return v

    @field_validator("range")
    @classmethod
    def _range_shape(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 2 or not v[0] < v[1]):
            raise ValueError("expected [min, max] with min < max")
        return v

    @model_validator(mode="after")
    def _one_conversion(self) -> FieldDef:
        if self.unit is not None and (self.scale is not None or self.offset != 0.0):
            raise ValueError("give either unit or scale/offset, not both")
        return self


class ExampleDef(Section):
    object: dict[str, Any] | None = None
    bytes: str | None = Field(None, description="payload as hex")
    port: int = Field(1, ge=0, le=255)
    expect: dict[str, float | int | bool | str] = Field(default_factory=dict)


class Definition(Section):
    model: str = Field(description="model id, e.g. acme-wl100")
    kind: str
    vendor: str
    title: str = ""
    reference: str = Field(min_length=1, description="where the mapping comes from: a vendor document or codec")
    input: list[Literal["object", "bytes"]] = Field(default_factory=lambda: ["object"], min_length=1)
    codec: str | None = Field(None, description="file name of a TS013 codec beside the definition")
    port: int = Field(1, ge=0, le=255)
    engine: Literal["auto", "quickjs", "mini-racer"] = "auto"
    time_limit_s: float = Field(DEFAULT_TIME_LIMIT_S, gt=0, le=1)
    memory_limit: int = Field(DEFAULT_MEMORY_LIMIT, ge=1 << 20, le=256 << 20)
    install_params: list[str] = Field(default_factory=list)
    dead_zone_mm: float = Field(0.0, ge=0)
    mounting: Literal["top", "bottom"] = "top"
    fields: dict[str, FieldDef] = Field(min_length=1)
    example: ExampleDef | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"expected one of {', '.join(KINDS)}")
        return v

    @field_validator("model", "vendor", "codec")
    @classmethod
    def _names(cls, v: str | None, info: ValidationInfo) -> str | None:
        form, example = _NAME_FORMS[info.field_name or ""]
        if v is not None and not form.fullmatch(v):
            raise ValueError(f"expected {example}")
        return v


assert set(ENGINES) | {"auto"} == {"auto", "quickjs", "mini-racer"}


def _parse_path(path: str) -> tuple[str | int, ...]:
    return tuple(m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART.finditer(path))


@dataclass(frozen=True, slots=True)
class FieldRule:
    """A compiled `FieldDef`: pulls one value out of a source object and makes it canonical."""

    name: str
    path: str
    parts: tuple[str | int, ...]
    typ: type
    scale: float
    offset: float
    range: tuple[float, float] | None
    values: Mapping[str, FieldValue] | None

    def lookup(self, data: object) -> object:
        node = data
        for part in self.parts:
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    return _MISSING
            elif not isinstance(node, dict):
                return _MISSING
            elif part not in node:
                part = part.replace("/", "_")  # an IPSO id written 3330/0/5700, pushed by OneNET as 3330_0_5700
                if part not in node:
                    return _MISSING
            node = node[part]  # type: ignore[index]
        return node

    def convert(self, value: object) -> FieldValue | str:
        """The canonical value, or a warning text (str wrapped in `_Warn`) saying why there is none."""
        if (self.values is not None and isinstance(value, str | int) and not isinstance(value, bool)
                and str(value) in self.values):
            value = self.values[str(value)]
        if self.typ is str:
            return value if isinstance(value, str) else _Warn(f"{self.name}: {self.path}={short(value)} is not text")
        if self.typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            return _Warn(f"{self.name}: {self.path}={short(value)} is not true/false")
        number = _number(value)
        if number is None:
            return _Warn(f"{self.name}: {self.path}={short(value)} is not a number")
        converted = round(number * self.scale + self.offset, 9)
        if self.range is not None and not self.range[0] <= converted <= self.range[1]:
            return _Warn(f"{self.name}: {converted:g} is outside {self.range[0]:g}..{self.range[1]:g}; dropped")
        if self.typ is int:
            if not float(converted).is_integer():
                return _Warn(f"{self.name}: {converted:g} is not a whole number")
            return int(converted)
        return float(converted)


class _Warn(str):
    """A conversion that produced a warning instead of a value."""


_MISSING = object()


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            n = float(value.strip())
        except ValueError:
            return None
        return n if math.isfinite(n) else None
    return None


def keys_of(obj: Mapping[str, Any], limit: int = 8) -> str:
    """The first keys of an object, each shortened: for messages about an object that may be hostile."""
    keys = [short(str(k), 40) for k in islice(obj, limit)]
    return (", ".join(keys) + (", ..." if len(obj) > limit else "")) or "none"


class MissingInput(DecodeError):
    """The uplink lacks what the model reads (no decoded object, or no payload bytes); the dead letter says which."""


@dataclass
class DefinedCodec:
    """Decodes with a `Definition`: the decoded object directly, or payload bytes through its JS codec."""

    model: str
    kind: str
    inputs: tuple[str, ...]
    rules: tuple[FieldRule, ...]
    js: JsCodec | None = None
    port: int = 1

    def __post_init__(self) -> None:
        self.field_types: dict[str, type] = {r.name: r.typ for r in self.rules}
        self.fields = tuple(self.field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        """Payload bytes through the JS codec, then the field mapping; `DecodeError` without a codec."""
        if self.js is None:
            raise MissingInput(f"{self.model} reads the decoded object only (it has no codec for payload bytes)")
        data, warnings = self.js.decode_data(payload, port)
        return self._map(data, warnings, "codec data")

    def decode_object(self, obj: Mapping[str, Any]) -> Decoded:
        """A decoded object from the network server or platform, through the field mapping."""
        return self._map(obj, [], "decoded object")

    def decode_input(self, payload: bytes, port: int, obj: Mapping[str, Any] | None) -> Decoded:
        """The first of the model's `input`s the uplink carries; `MissingInput` names what was missing."""
        for source in self.inputs:
            if source == "object" and obj is not None:
                return self.decode_object(obj)
            if source == "bytes" and payload and self.js is not None:
                return self.decode(payload, port)
        have = (f"a decoded object with keys {keys_of(obj)}" if obj is not None else
                f"{len(payload)} payload byte(s)" if payload else "neither a decoded object nor payload bytes")
        wanted = " or ".join({"object": "a decoded object (ChirpStack object, TTS decoded_payload, CTWing "
                                        "profile JSON, OneNET datastreams)",
                              "bytes": "payload bytes"}[s] for s in self.inputs)
        raise MissingInput(f"{self.model} reads {wanted}; this uplink carries {have}")

    def _map(self, data: Mapping[str, Any], warnings: list[str], what: str) -> Decoded:
        fields: dict[str, FieldValue] = {}
        found = 0
        for rule in self.rules:
            value = rule.lookup(data)
            if value is _MISSING or value is None:
                continue
            found += 1
            out = rule.convert(value)
            if isinstance(out, _Warn):
                warnings.append(str(out))
            else:
                fields[rule.name] = out
        if not found:
            raise DecodeError(f"{self.model}: none of its paths ({', '.join(r.path for r in self.rules)}) is in "
                              f"the {what} (its keys: {keys_of(data)})")
        return Decoded(fields, warnings)

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        raise EncodeUnsupported(f"{self.model}: a defined model decodes only (ModelInfo.can_encode is False)")


def decode_input(codec: Any, payload: bytes, port: int, obj: Mapping[str, Any] | None) -> Decoded:
    """Decode an uplink with any codec: defined models choose their input, others take the bytes.

    A bytes-only codec given an uplink that carries only a decoded object raises `MissingInput`.
    """
    if isinstance(codec, DefinedCodec):
        return codec.decode_input(payload, port, obj)
    if not payload and obj is not None:
        raise MissingInput(f"{codec.model} decodes payload bytes; this uplink carries only a decoded object "
                           f"(keys {keys_of(obj)}) — define the model with input = [\"object\"]")
    return codec.decode(payload, port)


def _field_problems(name: str, raw: object, kind: str, vendor: object) -> list[str]:
    """What is wrong with one field's name, type and unit (the shape is pydantic's to check)."""
    key = f"fields.{name}"
    allowed = {s.name for s in MEASUREMENTS[kind].fields} | HEALTH_FIELDS if kind in MEASUREMENTS else set()
    problems: list[str] = []
    canonical = canonical_type(name)
    if canonical is None:
        if not (isinstance(vendor, str) and name.startswith(f"{vendor}_") and len(name) > len(vendor) + 1):
            problems.append(f"{key}: {name!r} is neither a canonical field of kind {kind!r} "
                            f"({', '.join(sorted(allowed))}) nor a vendor field named {vendor}_<what>")
    elif kind in MEASUREMENTS and name not in allowed:
        problems.append(f"{key}: {name!r} is not a field of kind {kind!r}; expected one of "
                        f"{', '.join(sorted(allowed))}")
    if not isinstance(raw, dict):
        return problems
    typ = raw.get("type")
    if canonical is not None and isinstance(typ, str) and typ in _TYPES and _TYPES[typ] is not canonical:
        problems.append(f"{key}.type: {name} is always {_TYPE_NAMES[canonical]} (storage schema), got {typ!r}")
    if canonical is None and typ is None:
        problems.append(f"{key}.type: a vendor field needs its type: float, int, bool or str")
    unit = raw.get("unit")
    if isinstance(unit, str):
        try:
            conversion(unit, name)
        except ValueError as exc:
            problems.append(f"{key}.unit: {exc}")
    return problems


def _compile(d: Definition) -> tuple[FieldRule, ...]:
    rules = []
    for name, f in d.fields.items():
        typ = canonical_type(name) or _TYPES[f.type or "float"]
        scale, offset = conversion(f.unit, name) if f.unit else (f.scale if f.scale is not None else 1.0, f.offset)
        rules.append(FieldRule(name, f.path, _parse_path(f.path), typ, scale, offset,
                               tuple(f.range) if f.range else None, f.values))  # type: ignore[arg-type]
    return tuple(rules)


def _example_problems(info: ModelInfo, ex: ExampleDef) -> list[str]:
    codec = info.codec
    assert isinstance(codec, DefinedCodec)
    try:
        if ex.object is not None:
            got = codec.decode_object(ex.object)
        elif ex.bytes is not None:
            got = codec.decode(bytes.fromhex(ex.bytes), ex.port)
        else:
            return ["example: give object = {...} or bytes = \"hex\""]
    except (DecodeError, ValueError) as exc:
        return [f"example: does not decode: {exc}"]
    problems = [f"example.expect.{k}: decoded {got.fields.get(k, 'nothing')!r}, expected {v!r}"
                for k, v in ex.expect.items() if got.fields.get(k) != v]
    problems += [f"example: decode warned: {w}" for w in got.warnings]
    return problems


def _install_problems(kind: object, params: object, raw_fields: object) -> list[str]:
    """Install parameters the kind does not use, or the one its derivation needs but the definition lacks."""
    spec = KIND_SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None or not isinstance(params, list):
        return []
    problems = [f"install_params: {p!r} is not used by kind {kind!r} (its parameters: "
                f"{', '.join(spec.install) or 'none'})" for p in params if p not in spec.install]
    needed = next((p for p in spec.install if p != "dead_zone_mm"), None)
    if needed and isinstance(raw_fields, dict) and "distance_mm" in raw_fields and needed not in params:
        problems.append(f"install_params: a {kind} model that reports distance_mm needs {needed!r}, "
                        "from which the service derives its level")
    return problems


def parse_definition(data: dict[str, Any], path: Path) -> ModelInfo:
    """Validate a parsed definition; `DefinitionError` lists every problem (`key: reason`)."""
    problems: list[str] = []
    kind, vendor = data.get("kind"), data.get("vendor")
    raw_fields = data.get("fields")
    if isinstance(raw_fields, dict) and isinstance(kind, str):
        for name, raw in raw_fields.items():
            problems += _field_problems(name, raw, kind, vendor)
    model_id = data.get("model")
    if isinstance(model_id, str) and isinstance(vendor, str) and not model_id.startswith(f"{vendor}-"):
        problems.append(f"model: {model_id!r} must start with the vendor, {vendor}-")
    problems += _install_problems(kind, data.get("install_params", []), raw_fields)
    inputs = data.get("input", ["object"])
    codec_name = data.get("codec")
    if isinstance(inputs, list) and "bytes" in inputs and codec_name is None:
        problems.append("codec: input \"bytes\" needs a TS013 codec file beside the definition")
    if isinstance(codec_name, str) and "/" not in codec_name and not (path.parent / codec_name).is_file():
        problems.append(f"codec: {codec_name!r} is not a file in {path.parent}")
    try:
        d = Definition.model_validate(data)
    except ValidationError as exc:
        problems = [describe_error(e, model=Definition, unknown_hint="see decoders/definition.py for the keys")
                    for e in exc.errors()] + problems
    if problems:
        raise DefinitionError(path, _ordered(problems, data))
    js = None
    if d.codec is not None:
        js = JsCodec(d.model, d.kind, path.parent / d.codec, {}, port=d.port, engine=d.engine,
                     time_limit_s=d.time_limit_s, memory_limit=d.memory_limit)
        problem = js.load_problem()
        if problem:
            raise DefinitionError(path, [f"codec: {problem}"])
    codec = DefinedCodec(d.model, d.kind, tuple(d.input), _compile(d), js, d.port)
    info = ModelInfo(model=d.model, kind=d.kind, vendor=d.vendor, title=d.title or d.model, source="defined",
                     codec=codec, ranges={}, install_params=tuple(d.install_params), dead_zone_mm=d.dead_zone_mm,
                     reference=d.reference, can_encode=False, mounting=d.mounting, origin=str(path))
    if d.example is not None:
        example = _example_problems(info, d.example)
        if js is not None:
            js.reset()
        if example:
            raise DefinitionError(path, example)
    return info


def _ordered(problems: list[str], data: dict[str, Any]) -> list[str]:
    """Problems in the order of the file's keys, each once."""
    order = {k: i for i, k in enumerate(data)}
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: order.get(p.split(".", 1)[0].split(":", 1)[0], len(order)))


def load_definition(path: Path) -> ModelInfo:
    """Read and validate one definition file; `DefinitionError` for any problem, TOML syntax included."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DefinitionError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise DefinitionError(path, ["is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(path, [f"not valid TOML: {exc}"]) from None
    return parse_definition(data, path)


__all__ = ["DefinedCodec", "Definition", "DefinitionError", "MissingInput",
           "decode_input", "load_definition", "parse_definition"]
