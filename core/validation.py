"""Pydantic validation errors as one clear line each: the key's dotted path and what was expected.

Shared by the configuration (`service.config`) and device-model definition files
(`decoders.definition`), so an operator reads the same kind of message for either.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string in quotes", "dict_type": "a table", "model_type": "a table",
    "list_type": "a list [...]",
}


def describe_error(err: Any, *, unknown_hint: str = "see config.toml for the keys") -> str:
    """`key.path: what is wrong (got value)` for one entry of `ValidationError.errors()`."""
    key = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (check its spelling; {unknown_hint})"
    if kind == "missing":
        return f"{key}: required value is missing"
    if kind in _TYPE_WORDS:
        return f"{key}: expected {_TYPE_WORDS[kind]}, got {got!r}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {msg} (got {got!r})"


def describe_errors(exc: ValidationError, *, unknown_hint: str = "see config.toml for the keys") -> list[str]:
    """Every problem of `exc`, one line each, in the order pydantic found them."""
    return [describe_error(e, unknown_hint=unknown_hint) for e in exc.errors()]
