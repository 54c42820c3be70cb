"""The one place where every codec is listed: native modules below, JavaScript models from decoders/js/*.toml,
defined models from decoders/definitions/*.toml, and the city's own folders (`[decoders] paths`).

Adding a native model: write decoders/models/<vendor>_<model>.py defining `MODEL`, add one
line to `_NATIVE`. Adding a JavaScript model: drop `<model>.js` (a TS013 `decodeUplink`)
and `<model>.toml` (its field mapping) into decoders/js/. A native codec wins over a
JavaScript one with the same model id. A model without code is a definition file
(`decoders.definition`); the city's folders are loaded by `decoders.folders.ModelFolders`,
which installs them here with `set_external_models` and may never reuse a packaged id.
"""

from __future__ import annotations

import difflib
import tomllib
from functools import cache
from pathlib import Path

from decoders.definition import load_definition
from decoders.engines.js import JsCodec, JsField
from decoders.model_info import KINDS, ModelInfo
from decoders.models import (
    bosch_tps110,
    decentlab_dl_mbx,
    decentlab_dl_pm,
    decentlab_dl_pr26,
    dragino_dds20_lb,
    dragino_ldds20,
    dragino_ldds75,
    elsys_ers_sound,
    generic_mb_radar,
    generic_nb_noise,
    generic_nb_wl,
    milesight_am319,
    milesight_em310_udl,
    milesight_em400_udl,
    milesight_em500_swl,
    milesight_em500_udl,
    milesight_ws302,
    nwave_nps310,
    nwave_nps405,
)
from decoders.ranges import FieldRange

__all__ = ["FieldRange", "ModelInfo", "UnknownModel", "all_models", "defined_models", "get_model", "js_models",
           "packaged_ids", "set_external_models"]

_NATIVE: tuple[ModelInfo, ...] = (
    milesight_em500_udl.MODEL,
    milesight_em500_swl.MODEL,
    decentlab_dl_mbx.MODEL,
    decentlab_dl_pr26.MODEL,
    dragino_ldds75.MODEL,
    milesight_em310_udl.MODEL,
    milesight_em400_udl.MODEL,
    dragino_ldds20.MODEL,
    dragino_dds20_lb.MODEL,
    milesight_ws302.MODEL,
    elsys_ers_sound.MODEL,
    decentlab_dl_pm.MODEL,
    milesight_am319.MODEL,
    bosch_tps110.MODEL,
    nwave_nps405.MODEL,
    nwave_nps310.MODEL,
    generic_nb_wl.MODEL,
    generic_nb_noise.MODEL,
    generic_mb_radar.MODEL,
)

JS_DIR = Path(__file__).with_name("js")
DEFINITIONS_DIR = Path(__file__).with_name("definitions")
_external: dict[str, ModelInfo] = {}
_TYPES = {"float": float, "int": int, "bool": bool}


class UnknownModel(KeyError):
    """No model by that id; the message lists the closest known ids."""

    def __init__(self, model_id: str, known: list[str]) -> None:
        close = difflib.get_close_matches(model_id.lower(), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(sorted(known))}"
        super().__init__(f"unknown device model {model_id!r}{hint}")
        self.model_id, self.close_matches = model_id, close

    def __str__(self) -> str:
        return str(self.args[0])


def load_js_model(toml_path: Path) -> ModelInfo:
    """A JavaScript-backed model from its TOML description; ValueError says what is wrong in it."""
    spec = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    try:
        mapping = {key: JsField(f["name"], float(f.get("scale", 1.0)), _TYPES[f.get("type", "float")])
                   for key, f in spec["fields"].items()}
        model, kind = spec["model"], spec["kind"]
        script = toml_path.with_name(spec["script"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{toml_path.name}: missing or malformed entry {exc}") from None
    if kind not in KINDS:
        raise ValueError(f"{toml_path.name}: kind {kind!r} is not one of {', '.join(KINDS)}")
    limits = {k: spec[k] for k in ("time_limit_s", "memory_limit") if k in spec}
    codec = JsCodec(model, kind, script, mapping, port=int(spec.get("port", 1)), engine=spec.get("engine", "auto"),
                    **limits)
    return ModelInfo(model=model, kind=kind, vendor=spec.get("vendor", model.split("-")[0]),
                     title=spec.get("title", model), source="js", codec=codec, ranges={},
                     install_params=tuple(spec.get("install_params", ())),
                     dead_zone_mm=float(spec.get("dead_zone_mm", 0.0)), reference=spec.get("reference", ""),
                     can_encode=False)


@cache
def js_models() -> tuple[ModelInfo, ...]:
    """Every JavaScript-backed model shipped in decoders/js/."""
    return tuple(load_js_model(p) for p in sorted(JS_DIR.glob("*.toml")))


@cache
def defined_models() -> tuple[ModelInfo, ...]:
    """Every model shipped as a definition file in decoders/definitions/ (a broken one is a packaging bug)."""
    return tuple(load_definition(p) for p in sorted(DEFINITIONS_DIR.glob("*.toml")))


@cache
def _by_id() -> dict[str, ModelInfo]:
    models: dict[str, ModelInfo] = {m.model: m for m in defined_models()}
    models.update({m.model: m for m in js_models()})
    native_ids: set[str] = set()
    for m in _NATIVE:
        if m.model in native_ids:
            raise AssertionError(f"native model {m.model} listed twice")
        native_ids.add(m.model)
        models[m.model] = m
    return models


def packaged_ids() -> frozenset[str]:
    """Ids of the models that come with the package (a city's folder may not redefine them)."""
    return frozenset(_by_id())


def set_external_models(models: dict[str, ModelInfo]) -> None:
    """Replace the city's own models (from `[decoders] paths`) in one step; packaged ids are refused."""
    global _external
    clash = set(models) & packaged_ids()
    if clash:
        raise ValueError(f"packaged model ids cannot be redefined: {', '.join(sorted(clash))}")
    _external = dict(models)


def get_model(model_id: str) -> ModelInfo:
    """The model with this id (case-insensitive); `UnknownModel` lists close matches."""
    models = _by_id()
    key = model_id.strip().lower()
    found = models.get(key) or _external.get(key)
    if found is None:
        raise UnknownModel(model_id, [*models, *_external])
    return found


def all_models() -> list[ModelInfo]:
    """Every model, grouped by kind, then by id."""
    return sorted([*_by_id().values(), *_external.values()], key=lambda m: (KINDS.index(m.kind), m.model))
