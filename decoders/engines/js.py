"""JavaScript codecs for the long tail: a TS013 `decodeUplink` file run in an embedded engine.

The codec sees `{bytes, fPort, recvTime}` and returns `{data, errors, warnings}`; a field
mapping turns `data` into canonical fields. Each call runs under a time and a memory
limit: a codec that loops or allocates without bound becomes a `DecodeError`, its engine
context is thrown away and rebuilt, and the next uplink decodes normally.

Engines (PyPI `quickjs` and `mini-racer`), measured in benchmarks/decode_bench.py:
QuickJS runs in-process at about 12 µs a decode; V8 through mini-racer costs about 340 µs,
each call crossing to V8's thread. Both stop runaway loops, allocation and recursion and
recover. QuickJS (the 1.19 build on PyPI) cannot interrupt its regular-expression engine,
so a catastrophically backtracking regex would hang the decoding thread for good; V8 stops
it. Hence `engine="auto"` (the default): QuickJS for scripts that never run a regular
expression, V8 for those that may (they name RegExp or a method that executes one).
QuickJS counts its limit in process CPU time, V8 in wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeUnsupported

ENTRY = "__urbansense_decode"
_WRAPPER = f"""
;function {ENTRY}(json) {{
  var input = JSON.parse(json);
  input.recvTime = new Date(input.recvTime);
  var out = decodeUplink(input);
  return JSON.stringify(out === undefined ? null : out);
}}
;typeof decodeUplink === "function"
"""
MAX_RESULT_CHARS = 1 << 20
DEFAULT_TIME_LIMIT_S = 0.05
DEFAULT_MEMORY_LIMIT = 32 << 20


class LimitExceeded(Exception):
    """The codec ran past its time or memory limit; its context must be rebuilt."""


class ScriptError(Exception):
    """The codec threw, or its script does not load."""


class Engine(Protocol):
    """One loaded codec script; `call` takes and returns JSON text."""

    def call(self, arg: str) -> str: ...

    def close(self) -> None: ...


class QuickJsEngine:
    """QuickJS context with per-call CPU-time limit and a heap limit."""

    def __init__(self, source: str, time_limit_s: float, memory_limit: int) -> None:
        import quickjs

        self._exc = quickjs.JSException
        ctx = quickjs.Context()
        ctx.set_memory_limit(memory_limit)
        ctx.set_time_limit(max(time_limit_s * 20, 1.0))
        try:
            loaded = ctx.eval(source + _WRAPPER)
        except quickjs.JSException as exc:
            raise ScriptError(f"script does not load: {_first_line(exc)}") from None
        if loaded is not True:
            raise ScriptError("script does not define a function decodeUplink(input)")
        ctx.set_time_limit(time_limit_s)
        self._ctx, self._fn = ctx, ctx.get(ENTRY)

    def call(self, arg: str) -> str:
        try:
            return self._fn(arg)
        except self._exc as exc:
            text = str(exc)
            if text.startswith("InternalError: interrupted"):
                raise LimitExceeded("time") from None
            if text.startswith("InternalError: out of memory"):
                raise LimitExceeded("memory") from None
            if text.startswith("InternalError: stack overflow"):
                raise LimitExceeded("stack") from None
            raise ScriptError(_first_line(text)) from None

    def close(self) -> None:
        self._ctx = self._fn = None


class MiniRacerEngine:
    """V8 through mini-racer, with per-call `timeout_sec` and `max_memory`.

    The context is made on a helper thread: made on a thread running an asyncio loop (the
    service's), mini-racer would adopt that loop and refuse synchronous timeouts.
    """

    def __init__(self, source: str, time_limit_s: float, memory_limit: int) -> None:
        import py_mini_racer as mr

        self._mr, self._limit, self._memory = mr, time_limit_s, memory_limit
        self._ctx = _off_loop(mr.MiniRacer)
        try:
            loaded = self._ctx.eval(source + _WRAPPER, timeout_sec=max(time_limit_s * 20, 1.0), max_memory=memory_limit)
        except mr.JSEvalException as exc:
            raise ScriptError(f"script does not load: {_first_line(exc)}") from None
        if loaded is not True:
            raise ScriptError("script does not define a function decodeUplink(input)")

    def call(self, arg: str) -> str:
        mr = self._mr
        try:
            return self._ctx.call(ENTRY, arg, timeout_sec=self._limit, max_memory=self._memory)
        except mr.JSTimeoutException:
            raise LimitExceeded("time") from None
        except mr.JSOOMException:
            raise LimitExceeded("memory") from None
        except mr.JSEvalException as exc:
            text = str(exc)
            if "Maximum call stack size" in text:
                raise LimitExceeded("stack") from None
            raise ScriptError(_first_line(text)) from None

    def close(self) -> None:
        # A trivial call queues behind the cancelled one, so V8 has answered it before the
        # context's loop stops (else mini-racer reports an ignored exception in a callback).
        with contextlib.suppress(Exception):
            self._ctx.eval("0", timeout_sec=1.0)
        self._ctx.close()


def _off_loop(make):
    """`make()` on a helper thread when this thread runs an asyncio loop, else here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return make()
    box: list = []
    worker = threading.Thread(target=lambda: box.append(make()), name="mini-racer-init")
    worker.start()
    worker.join()
    return box[0]


ENGINES = {"quickjs": QuickJsEngine, "mini-racer": MiniRacerEngine}
_RUNS_REGEX = re.compile(r"RegExp|Symbol\.|\.(?:test|exec|match|matchAll|replace|replaceAll|search|split)\s*\(")


def choose_engine(source: str) -> str:
    """"quickjs" unless the script may execute a regular expression (or QuickJS is missing)."""
    try:
        import quickjs  # noqa: F401
    except ImportError:
        return "mini-racer"
    return "mini-racer" if _RUNS_REGEX.search(source) else "quickjs"


@dataclass(frozen=True, slots=True)
class JsField:
    """Where a canonical field comes from in the codec's `data`: a key (dotted for nesting), unit scale, type.

    A scale of 1/n (0.1, 0.001) divides by n, so mV → V gives 3.3, not 3.3000000000000003.
    """

    name: str
    scale: float = 1.0
    kind: type = float


@dataclass
class JsCodec:
    """A decode-only codec backed by a TS013 script; `encode` raises `EncodeUnsupported`."""

    model: str
    kind: str
    script: Path
    mapping: Mapping[str, JsField]
    port: int = 1
    engine: str = "auto"
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    memory_limit: int = DEFAULT_MEMORY_LIMIT

    def __post_init__(self) -> None:
        if self.engine != "auto" and self.engine not in ENGINES:
            raise ValueError(f"unknown JS engine {self.engine!r}; choose auto, {', '.join(ENGINES)}")
        self.field_types: dict[str, type] = {f.name: f.kind for f in self.mapping.values()}
        self.fields = tuple(self.field_types)
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._load_error: str | None = None

    def _loaded(self) -> Engine:
        if self._engine is None:
            if self._load_error is not None:
                raise DecodeError(f"{self.model}: {self._load_error}")
            try:
                source = self.script.read_text(encoding="utf-8")
                engine = choose_engine(source) if self.engine == "auto" else self.engine
                self._engine = ENGINES[engine](source, self.time_limit_s, self.memory_limit)
            except (OSError, ScriptError, LimitExceeded) as exc:
                self._load_error = f"JS codec {self.script.name}: {exc}"
                raise DecodeError(f"{self.model}: {self._load_error}") from None
        return self._engine

    def load_problem(self) -> str | None:
        """Why the script cannot be used (unreadable, does not load, no decodeUplink); None when it loads.

        The trial engine is closed again: the one that decodes is made on the thread that decodes.
        """
        try:
            source = self.script.read_text(encoding="utf-8")
            engine = ENGINES[choose_engine(source) if self.engine == "auto" else self.engine](
                source, self.time_limit_s, self.memory_limit)
        except (OSError, ScriptError, LimitExceeded) as exc:
            return f"JS codec {self.script.name}: {exc}"
        engine.close()
        return None

    def reset(self) -> None:
        """Drop the engine (a trial run's), so the next decode makes a fresh one on its own thread."""
        with self._lock:
            if self._engine is not None:
                self._engine.close()
            self._engine, self._load_error = None, None

    def decode(self, payload: bytes, port: int) -> Decoded:
        data, warnings = self.decode_data(payload, port)
        fields: dict[str, FieldValue] = {}
        for path, spec in self.mapping.items():
            value = _lookup(data, path)
            if value is _MISSING:
                continue
            converted = _convert(value, spec)
            if converted is None:
                warnings.append(f"{spec.name}: codec gave {path}={short(value)}, not a {spec.kind.__name__}")
            else:
                fields[spec.name] = converted
        return Decoded(fields, warnings)

    def decode_data(self, payload: bytes, port: int) -> tuple[dict, list[str]]:
        """The codec's own `data` object and its warnings, before any field mapping; `DecodeError` if it fails."""
        arg = orjson.dumps({"bytes": list(payload), "fPort": port,
                            "recvTime": datetime.now(UTC).isoformat()}).decode()
        with self._lock:
            engine = self._loaded()
            try:
                text = engine.call(arg)
            except LimitExceeded as exc:
                self._engine = None
                engine.close()
                what = {"time": f"its {self.time_limit_s * 1000:g} ms time limit",
                        "memory": f"its {self.memory_limit >> 20} MiB memory limit",
                        "stack": "the stack depth limit"}[str(exc)]
                raise DecodeError(f"{self.model}: JS codec stopped, it exceeded {what}") from None
            except ScriptError as exc:
                raise DecodeError(f"{self.model}: JS codec threw: {exc}") from None
        return self._result(text)

    def _result(self, text: object) -> tuple[dict, list[str]]:
        if not isinstance(text, str) or len(text) > MAX_RESULT_CHARS:
            raise DecodeError(f"{self.model}: JS codec returned no usable result")
        out = orjson.loads(text)
        if not isinstance(out, dict):
            raise DecodeError(f"{self.model}: decodeUplink returned {short(out)}, expected an object")
        errors = out.get("errors")
        if errors:
            items = errors if isinstance(errors, list) else [errors]
            raise DecodeError(f"{self.model}: JS codec reported: " + "; ".join(short(e, 200) for e in items))
        data = out.get("data")
        if not isinstance(data, dict):
            raise DecodeError(f"{self.model}: decodeUplink returned no data object")
        raw_warnings = out.get("warnings") or []
        return data, [short(w, 200) for w in (raw_warnings if isinstance(raw_warnings, list) else [raw_warnings])]

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        raise EncodeUnsupported(f"{self.model}: a JavaScript codec decodes only (ModelInfo.can_encode is False)")


_MISSING = object()


def _lookup(data: dict, path: str) -> object:
    node: object = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _convert(value: object, spec: JsField) -> FieldValue | None:
    if spec.kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    divisor = 1 / spec.scale
    scaled = value / round(divisor) if divisor > 1 and divisor.is_integer() else value * spec.scale
    if spec.kind is int:
        return int(scaled) if float(scaled).is_integer() else None
    return float(scaled)


def short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: object) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
