"""InfluxDB line protocol: encode readings (fast, cached tag strings), and split/parse lines for error handling.

Escaping follows the InfluxDB 1.x parser (models/points.go), which is stricter than the
spec page in three corners; these are the rules applied here, each pinned by a test
that writes to a real influxd and reads the value back:

* measurement: `,` and space are escaped. A measurement must be non-empty and must not
  start with `#`, a space, a tab or NUL (comment / whitespace to the parser): `ValueError`.
* tag keys and values: `,`, `=` and space are escaped. A newline cannot be represented
  (the parser ends the line there even when escaped), so it is written as an escaped
  space. A trailing backslash cannot be represented either (it would escape the
  separator that follows), so trailing backslashes are removed. A tag whose value is
  empty after this is left out (InfluxDB has no empty tags); so is a tag whose key has a
  backslash before a space or newline or at its end (it would end the key section early
  for the parser's line splitter), starts with a tab or NUL, or is the reserved `time`.
* field keys: `,`, `=` and space are escaped, a newline becomes an escaped space. The
  field section is scanned in backslash pairs, so a key with a backslash before `,`,
  `=`, space, `"` or at its end, or starting with a tab or NUL, cannot come back
  unchanged: such a field is dropped and reported, as is the reserved key `time`.
* string field values: `\\` and `"` are escaped; newlines are kept as they are (the
  parser allows them inside quotes). Lone surrogates, which UTF-8 cannot carry, become `?`.
* floats are written with `repr` (shortest round-tripping form), integers with `i`,
  booleans as `true`/`false`; timestamps in ns.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.reading import Point, Reading
from core.schema import (
    ALERT_TYPES,
    CANONICAL_TYPES,
    INT64_MAX,
    INT64_MIN,
    RESERVED_KEYS,
    DroppedField,
    FieldRejected,
    FieldType,
    coerce_field,
    short_repr,
)

TAG_CACHE_SIZE = 1 << 17
"""Escaped tag strings kept (LRU); one entry per device, about 300 bytes each."""

_MAX_KEY_CACHE = 4096

_MEASUREMENT_ESC = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ "})
_KEY_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ "})
_FIELD_KEY_BAD_AFTER_BACKSLASH = frozenset(',= "\n')


def escape_measurement(name: str) -> str:
    """`name` escaped for the measurement position; `ValueError` when InfluxDB could not read it back."""
    if not name or name[0] in "# \t\0" or name.endswith("\\"):
        raise ValueError(f"measurement name {name!r} cannot be written in line protocol")
    return name.translate(_MEASUREMENT_ESC)


def normalize_tag(text: str) -> str:
    """The tag key or value InfluxDB will store for `text`: newlines as spaces, no trailing backslash."""
    return text.replace("\n", " ").rstrip("\\")


def escape_tag(text: str) -> str:
    """`text` escaped as a tag key or value (after `normalize_tag`); '' means leave the tag out."""
    return normalize_tag(text).translate(_KEY_ESC)


def escape_field_key(key: str) -> str:
    """`key` escaped as a field key (check `field_key_problem` first)."""
    return key.translate(_KEY_ESC)


def normalize_field_key(key: str) -> str:
    """The field key InfluxDB will store for `key` (when `field_key_problem` is None): newlines as spaces."""
    return key.replace("\n", " ")


def field_key_problem(key: str) -> str | None:
    """Why `key` cannot be a field key that reads back unchanged, or None when it can."""
    if not key:
        return "empty field key"
    if key in RESERVED_KEYS:
        return f"field name {key!r} is reserved by InfluxDB"
    if key[0] in "\t\0":
        return "field key starts with a tab or NUL, which InfluxDB strips"
    text = key.replace("\n", " ")
    if text.endswith("\\"):
        return "field key ends with a backslash"
    i = text.find("\\")
    while i != -1:
        if text[i + 1] in _FIELD_KEY_BAD_AFTER_BACKSLASH:
            return "field key has a backslash before a special character"
        i = text.find("\\", i + 1)
    return None


def tag_key_ok(key: str) -> bool:
    """Whether `key` can be a tag key that reads back as `normalize_tag(key)`."""
    if not key or key in RESERVED_KEYS or key[0] in "\t\0":
        return False
    if "\\" not in key:
        return True
    text = key.replace("\n", " ")
    return not text.endswith("\\") and "\\ " not in text


_PLAIN = re.compile(r"[^,= \n\\]+")
"""Text that needs no escaping and no normalisation."""


@functools.lru_cache(maxsize=TAG_CACHE_SIZE)
def tag_string(tags: tuple[tuple[str, str], ...]) -> str:
    """`,k=v,k=v` for a sorted tag tuple, escaped; tags that cannot be represented are left out."""
    parts = []
    plain = _PLAIN.fullmatch
    for key, value in tags:
        if not isinstance(value, str):
            value = str(value)
        if plain(key) and plain(value) and key not in RESERVED_KEYS and key[0] not in "\t\0":
            parts.append(f",{key}={value}")
            continue
        if not tag_key_ok(key):
            continue
        escaped_value = escape_tag(value)
        if escaped_value:
            parts.append(f",{escape_tag(key)}={escaped_value}")
    return "".join(parts)


_measurements: dict[str, str] = {}
_field_prefixes: dict[str, str] = {}
_fast_keys: dict[str, tuple[str, FieldType | None]] = {}
"""Writable field key → (`escaped_key=`, its canonical type or None for vendor fields)."""
_NO_FAST_KEYS: dict[str, tuple[str, FieldType | None]] = {}


def _measurement(name: str) -> str:
    escaped = _measurements.get(name)
    if escaped is None:
        escaped = escape_measurement(name)
        if len(_measurements) >= _MAX_KEY_CACHE:
            _measurements.clear()
        _measurements[name] = escaped
    return escaped


def _field_prefix(key: str) -> str:
    """`escaped_key=`, or '' when the key cannot be written."""
    prefix = _field_prefixes.get(key)
    if prefix is None:
        prefix = "" if field_key_problem(key) else escape_field_key(key) + "="
        if len(_field_prefixes) >= _MAX_KEY_CACHE:
            _field_prefixes.clear()
        _field_prefixes[key] = prefix
    return prefix


def escape_string_value(text: str) -> str:
    """A string field value, quoted and escaped."""
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def format_value(value: float | int | bool | str) -> str:
    """One already-coerced field value in line protocol."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return escape_string_value(value)


_FLOAT, _INTEGER, _BOOLEAN = FieldType.FLOAT, FieldType.INTEGER, FieldType.BOOLEAN


def encode_fields(measurement: str, fields: Mapping[str, object], dropped: list[DroppedField] | None = None,
                  types: Mapping[str, FieldType] = CANONICAL_TYPES) -> str:
    """`k=v,k=v` with every value coerced to its schema type; fields that cannot be written go to `dropped`."""
    out: list[str] = []
    append = out.append
    known = _fast_keys if types is CANONICAL_TYPES else _NO_FAST_KEYS
    value: Any  # narrowed by `type(value) is ...`, which mypy does not follow (isinstance would admit numpy scalars)
    for key, value in fields.items():
        entry = known.get(key)
        if entry is not None:
            prefix, want = entry
            kind = type(value)
            if kind is float:
                if value - value == 0.0 and want is not _INTEGER and want is not _BOOLEAN:  # finite
                    append(prefix + repr(value))
                    continue
            elif kind is int:
                if INT64_MIN <= value <= INT64_MAX:
                    if want is _INTEGER:
                        append(f"{prefix}{value}i")
                        continue
                    if want is not _BOOLEAN:
                        append(prefix + repr(float(value)))
                        continue
            elif kind is bool and want is not _FLOAT and want is not _INTEGER:
                append(prefix + ("true" if value else "false"))
                continue
        text = _encode_field_slow(measurement, key, value, types, dropped)
        if text is not None:
            append(text)
    return ",".join(out)


def _encode_field_slow(measurement: str, key: str, value: object, types: Mapping[str, FieldType],
                       dropped: list[DroppedField] | None) -> str | None:
    """Anything off the fast path: a new or unwritable key, a value to coerce, strings."""
    prefix = _field_prefix(key)
    if not prefix:
        if dropped is not None:
            dropped.append(DroppedField(measurement, key, short_repr(value),
                                        field_key_problem(key) or "invalid field key"))
        return None
    if types is CANONICAL_TYPES and key not in _fast_keys:
        if len(_fast_keys) >= _MAX_KEY_CACHE:
            _fast_keys.clear()
        _fast_keys[key] = (prefix, types.get(key))
    try:
        coerced = coerce_field(key, value, types)  # type: ignore[arg-type]
    except FieldRejected as exc:
        if dropped is not None:
            dropped.append(DroppedField(measurement, key, short_repr(value), exc.reason))
        return None
    return prefix + format_value(coerced)


def _check_time(time_ns: object) -> int:
    if type(time_ns) is not int:
        if isinstance(time_ns, bool) or not hasattr(time_ns, "__index__"):
            raise ValueError(f"time_ns must be an integer of nanoseconds, got {time_ns!r}")
        time_ns = int(time_ns)
    if not INT64_MIN < time_ns < INT64_MAX:
        raise ValueError(f"time_ns {time_ns} is outside InfluxDB's time range")
    return time_ns


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def encode_reading(reading: Reading, dropped: list[DroppedField] | None = None) -> bytes:
    """The reading's line in its kind's measurement, plus a `device_health` line when it has health fields.

    Both lines carry the reading's tags and its time in ns and end with a newline, so
    encoded readings concatenate into a batch. Fields that cannot be written are left
    out and appended to `dropped` with the reason; a line left with no field is not
    written (b"" when neither is). `ValueError` for an unwritable kind or time.
    """
    tags = tag_string(reading.tags)
    ts = reading.time_ns if type(reading.time_ns) is int else _check_time(reading.time_ns)
    if not INT64_MIN < ts < INT64_MAX:
        _check_time(ts)
    head = _measurement(reading.kind)
    text = ""
    fields = encode_fields(reading.kind, reading.fields, dropped)
    if fields and reading.history:
        fields += ",history=true"
    if fields:
        text = f"{head}{tags} {fields} {ts}\n"
    if reading.health:
        health = encode_fields("device_health", reading.health, dropped)
        if health:
            text += f"device_health{tags} {health} {ts}\n"
    return _to_bytes(text)


def encode_point(measurement: str, tags: Iterable[tuple[str, str]], fields: Mapping[str, object], time_ns: int,
                 dropped: list[DroppedField] | None = None,
                 types: Mapping[str, FieldType] = CANONICAL_TYPES) -> bytes:
    """One point, any measurement; tags are sorted here. b"" when no field can be written."""
    encoded = encode_fields(measurement, fields, dropped, types)
    if not encoded:
        return b""
    tag_text = tag_string(tuple(sorted(tags)))
    return _to_bytes(f"{_measurement(measurement)}{tag_text} {encoded} {_check_time(time_ns)}\n")


def encode_points(points: Iterable[Point], dropped: list[DroppedField] | None = None) -> bytes:
    """Line protocol for `Point`s of any measurement (the `alerts` measurement with its own schema types)."""
    out = []
    for p in points:
        types = ALERT_TYPES if p.measurement == "alerts" else CANONICAL_TYPES
        out.append(encode_point(p.measurement, p.tags, p.fields, p.time_ns, dropped, types))
    return b"".join(out)


# ---- reading lines back: how InfluxDB 1.x splits and parses them (for error handling and tests) ----

_BACKSLASH, _NL, _SPACE, _QUOTE, _EQ, _COMMA = 92, 10, 32, 34, 61, 44


def _line_end(body: bytes, i: int) -> int:
    """Index of the newline ending the line that starts at `i` (mirrors influxdb's scanLine)."""
    n = len(body)
    quoted = fields = False
    equals = commas = 0
    while i < n:
        c = body[i]
        if c == _BACKSLASH:
            i += 2
            continue
        if c == _SPACE:
            fields = True
        if fields:
            if not quoted and c == _EQ:
                equals += 1
                i += 1
                continue
            if not quoted and c == _COMMA:
                commas += 1
                i += 1
                continue
            if c == _QUOTE and equals > commas:
                quoted = not quoted
                i += 1
                continue
        if c == _NL and not quoted:
            return i
        i += 1
    return n


def split_lines(body: bytes) -> list[bytes]:
    """The lines of a batch as InfluxDB splits them (newlines inside quoted strings stay); no blanks or comments."""
    if b'"' not in body and b"\\" not in body:
        raw = body.split(b"\n")
    else:
        raw = []
        i, n = 0, len(body)
        while i < n:
            end = _line_end(body, i)
            raw.append(body[i:end])
            i = end + 1
    return [line for line in raw if line.strip(b" \t\0") and not line.lstrip(b" \t\0").startswith(b"#")]


def join_lines(lines: Iterable[bytes]) -> bytes:
    """Lines back into a body, each ending with a newline."""
    return b"".join(line + b"\n" for line in lines)


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A line as InfluxDB reads it: unescaped names; field values raw with their type."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, tuple[FieldType | str, str]]
    time_ns: int | None


def _unescape_pairs(text: str, chars: str) -> str:
    if "\\" not in text:
        return text
    out = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\\" and i + 1 < n and text[i + 1] in chars:
            out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _value_type(raw: str) -> FieldType | str:
    if raw.startswith('"'):
        return FieldType.STRING
    if raw[:1] in ("t", "T", "f", "F"):
        return FieldType.BOOLEAN
    if raw.endswith("i"):
        return FieldType.INTEGER
    if raw.endswith("u"):
        return "unsigned"
    return FieldType.FLOAT


def parse_line(line: bytes) -> ParsedLine:
    """Parse one line the way InfluxDB 1.x does; `ValueError` when it could not."""
    text = line.decode("utf-8", "replace").lstrip(" \t\0")
    n = len(text)
    # key section: a byte is escaped when the byte before it is a backslash
    i = 0
    while i < n and not (text[i] in ", " and i > 0 and text[i - 1] != "\\"):
        i += 1
    if i >= n:
        raise ValueError("missing fields")
    measurement = _unescape_pairs(text[:i], ", ")
    tags: dict[str, str] = {}
    while text[i] == ",":
        start = i + 1
        i = start
        while i < n and not (text[i] in ", " and text[i - 1] != "\\"):
            i += 1
        if i >= n:
            raise ValueError("missing fields")
        pair = text[start:i]
        eq = next((j for j in range(1, len(pair)) if pair[j] == "=" and pair[j - 1] != "\\"), -1)
        if eq <= 0:
            raise ValueError("missing tag value")
        tags[_unescape_pairs(pair[:eq], ",= ")] = _unescape_pairs(pair[eq + 1:], ",= ")
    # field section: backslash pairs, quotes only inside values
    while i < n and text[i] in " \t\0":
        i += 1
    fields: dict[str, tuple[FieldType | str, str]] = {}
    while i < n and text[i] != " ":
        start = i
        while i < n and text[i] != "=":
            i += 2 if text[i] == "\\" else 1
        if i >= n:
            raise ValueError("invalid field format")
        key = _unescape_pairs(text[start:i], ',"= ')
        i += 1
        vstart = i
        quoted = False
        while i < n:
            c = text[i]
            if c == "\\" and quoted:
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif not quoted and c in ", ":
                break
            i += 1
        raw = text[vstart:i]
        if not raw:
            raise ValueError("missing field value")
        fields[key] = (_value_type(raw), raw)
        if i < n and text[i] == ",":
            i += 1
    if not fields:
        raise ValueError("missing fields")
    rest = text[i:].strip(" ")
    return ParsedLine(measurement, tags, fields, int(rest) if rest else None)
