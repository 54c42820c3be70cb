"""Milesight WS302 sound level meter: instantaneous level, Leq and Lmax, with the weighting in a header byte."""

from __future__ import annotations

from decoders.codec import DecodeError, FieldValue
from decoders.engines import milesight
from decoders.engines.tlv import Value, item
from decoders.errors import EncodeError
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

_FREQ = {0: "z", 1: "a", 2: "c"}
_TIME = {0: "impulse", 1: "fast", 2: "slow"}
_A_FAST = 0x05


def _rename(freq: str) -> dict[str, str]:
    return {"laeq_db": f"milesight_l{freq}eq_db", "lmax_db": f"milesight_l{freq}max_db"}


def _after_decode(fields: dict[str, FieldValue], warnings: list[str]) -> None:
    """The canonical names hold A-weighted levels only; C/Z-weighted ones keep vendor names."""
    weighting = fields.pop("_weighting", None)
    if weighting is None:
        return
    freq, time = _FREQ.get(int(weighting) & 0x03), _TIME.get((int(weighting) >> 2) & 0x03)
    if freq is None or time is None:
        raise DecodeError(f"milesight-ws302: reserved weighting byte {int(weighting):#04x}")
    if freq != "a":
        for old, new in _rename(freq).items():
            if old in fields:
                fields[new] = fields.pop(old)
        warnings.append(f"sound levels are {freq.upper()}-weighted, reported as milesight_l{freq}eq_db/"
                        f"milesight_l{freq}max_db, not laeq_db")


def _before_encode(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    for freq, code in (("c", 0x06), ("z", 0x04)):
        names = _rename(freq)
        if any(new in fields for new in names.values()):
            if "laeq_db" in fields or "lmax_db" in fields:
                raise EncodeError("milesight-ws302: one frame carries either A- or C/Z-weighted levels")
            for old, new in names.items():
                if new in fields:
                    fields[old] = fields.pop(new)
            return _complete(fields, code)
    return _complete(fields, _A_FAST) if "laeq_db" in fields or "lmax_db" in fields else fields


def _complete(fields: dict[str, FieldValue], weighting: int) -> dict[str, FieldValue]:
    """One item carries all three levels: a missing one repeats Leq (or Lmax)."""
    level = fields.get("laeq_db", fields.get("lmax_db"))
    return {"milesight_lp_db": level, "laeq_db": level, "lmax_db": level, **fields, "_weighting": weighting}


CODEC = milesight.codec(
    "milesight-ws302", "noise",
    item(0x05, 0x5B, 7, Value("_weighting", "B", kind=int), Value("milesight_lp_db", "H", 1, div=10),
         Value("laeq_db", "H", 3, div=10), Value("lmax_db", "H", 5, div=10), name="sound level"),
    extra_responses={0x11: 4, 0x17: 2, 0x1D: 2, 0x2D: 1, 0x3B: 1},
    after_decode=_after_decode, before_encode=_before_encode,
    extra_fields={f"milesight_l{f}{q}_db": float for f in "cz" for q in ("eq", "max")},
)

MODEL = ModelInfo(
    model="milesight-ws302", kind="noise", vendor="milesight", title="Milesight WS302 sound level meter",
    source="native", codec=CODEC,
    ranges={"laeq_db": FieldRange(30, 130, 0.1), "lmax_db": FieldRange(30, 130, 0.1),
            "milesight_lp_db": FieldRange(30, 130, 0.1), "battery_pct": FieldRange(0, 100, 1)},
    reference="Milesight-IoT/SensorDecoders WS_Series/WS302/README.md and WS302_Decoder.js",
)
