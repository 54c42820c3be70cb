"""Hypothesis helpers that break a valid JSON document one value at a time (the envelope parsers' fuzz tests)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st


def json_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) to a value inside `node`, parents before their children."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += json_paths(v, (*prefix, i))
    return out


def mutate(data: st.DataObject, doc: Any, values: st.SearchStrategy) -> bool:
    """Delete one value of `doc` at a drawn path, or put a value drawn from `values` there (a copy: a shared
    [] or {} must not be mutated later); False when `doc` holds no value to change."""
    paths = json_paths(doc)
    if not paths:
        return False
    path = data.draw(st.sampled_from(paths))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(data.draw(values))
    return True
