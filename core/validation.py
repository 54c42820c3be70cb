"""The one translator of pydantic validation errors into what a person reads: the key, then what is wrong.

Used for config.toml (`service.config`) and any other file validated with pydantic; a message
names the dotted key (`mqtt.port`, `receivers.case.url`) and the expected form in plain words.
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string in quotes", "dict_type": "a table", "model_type": "a table",
}


def describe_error(err: ErrorDetails) -> str:
    """`key: what is wrong` for one pydantic error (unknown key, missing value, wrong type, out of range)."""
    key = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (check its spelling; see config.toml for the keys)"
    if kind == "missing":
        return f"{key}: required value is missing"
    if kind in TYPE_WORDS:
        return f"{key}: expected {TYPE_WORDS[kind]}, got {got!r}"
    return f"{key}: {err['msg']} (got {got!r})"


def describe_errors(exc: ValidationError) -> list[str]:
    """Every problem of `exc`, one line each, in the order pydantic found them."""
    return [describe_error(e) for e in exc.errors()]
