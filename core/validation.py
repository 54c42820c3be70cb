"""Pydantic validation errors as one clear line each: the key's dotted path and what was expected.

Shared by the configuration (`service.config`) and device-model definition files
(`decoders.definition`), so an operator reads the same kind of message for either. A value is
echoed only when it is a scalar (or a list of scalars) of a field known not to hold a secret (`SecretStr`, `SecretUrl`):
a secret's value, a whole table or list, and anything whose field cannot be told are shown by
their type alone ("got a number (value hidden)"), since these lines reach check-config and the log.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Secret, SecretStr, ValidationError

from core.secrets import MASK

_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string in quotes", "dict_type": "a table", "model_type": "a table",
    "list_type": "a list [...]",
}


def _type_word(value: Any) -> str:
    """What kind of TOML value `value` is, without its content."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "nothing" if value is None else f"a {type(value).__name__}"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _is_secret_type(ann: Any) -> bool:
    """`ann` is, or directly wraps (Optional, dict values, list items), a secret type."""
    if isinstance(ann, type) and issubclass(ann, (SecretStr, Secret)):
        return True
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return False
    return any(_is_secret_type(a) for a in get_args(ann))


def _step(ann: Any, part: str | int) -> Any:
    """The annotation one `loc` part below `ann`, or None when it cannot be followed."""
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    origin = get_origin(ann)
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(ann) if m is not type(None)]
        for m in members:  # a discriminated union's loc names the member by its tag
            if isinstance(m, type) and issubclass(m, BaseModel) and any(
                    get_origin(f.annotation) is Literal and part in get_args(f.annotation)
                    for f in m.model_fields.values()):
                return m
        found = [s for s in (_step(m, part) for m in members) if s is not None]
        return found[0] if len(found) == 1 else None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        field = ann.model_fields.get(str(part))
        return None if field is None else field.annotation
    if origin is dict:
        return get_args(ann)[1] if isinstance(part, str) else None
    if origin in (list, tuple, set, frozenset) and isinstance(part, int):
        args = get_args(ann)
        return args[0] if args else None
    return None


def _may_be_secret(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> bool:
    """True when `loc` reaches a secret field of `model`, or cannot be followed (fail closed)."""
    ann: Any = model
    for part in loc:
        ann = _step(ann, part) if ann is not None else None
        if ann is None or _is_secret_type(ann):
            return True
    return False


def describe_error(err: Any, *, model: type[BaseModel] | None = None,
                   unknown_hint: str = "see config.toml for the keys") -> str:
    """`key.path: what is wrong (got value)` for one entry of `ValidationError.errors()`.

    `model` is the validated model, used to tell secret fields; without it no value is echoed.
    """
    key = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (check its spelling; {unknown_hint})"
    if kind == "missing":
        return f"{key}: required value is missing"
    table = not _is_scalar(got) and not (isinstance(got, (list, tuple)) and all(_is_scalar(v) for v in got))
    hidden = table or _may_be_secret(model, tuple(err["loc"]))
    shown = f"{_type_word(got)} (value hidden)" if hidden else repr(got)
    if kind in _TYPE_WORDS:
        return f"{key}: expected {_TYPE_WORDS[kind]}, got {shown}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if table:  # a whole section or receiver: its key and the message say what is wrong
        return f"{key}: {msg}"
    if hidden and isinstance(got, (str, int, float)) and str(got) and str(got) in msg:
        msg = msg.replace(str(got), MASK)
    return f"{key}: {msg} (got {shown})"


def describe_errors(exc: ValidationError, *, model: type[BaseModel] | None = None,
                    unknown_hint: str = "see config.toml for the keys") -> list[str]:
    """Every problem of `exc`, one line each, in the order pydantic found them."""
    return [describe_error(e, model=model, unknown_hint=unknown_hint) for e in exc.errors()]
