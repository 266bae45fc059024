"""Dotted config field names (`"model.norm"` is `config["model"]["norm"]`), walked once.

Works on ml_collections ConfigDicts and on the plain dicts `ConfigDict.to_dict()` gives.
"""

from __future__ import annotations

import ml_collections

MISSING = object()  # what `get` returns for a field (or a group above it) that is absent


def is_group(value) -> bool:
    """Whether `value` holds fields (a ConfigDict or a dict), not a value."""
    return isinstance(value, (dict, ml_collections.ConfigDict))


def walk(tree, path: str) -> tuple[int, object]:
    """(n, node): the first n parts of `path` exist and lead to `node`; n is less than
    the number of parts where a part is absent or `node` is a value, not a group."""
    parts = path.split(".")
    node = tree
    for n, part in enumerate(parts):
        if not is_group(node) or part not in node:
            return n, node
        node = node[part]
    return len(parts), node


def get(tree, path: str, default=MISSING):
    """`tree.<path>`, or `default` (MISSING) where the field or a group above it is absent."""
    n, node = walk(tree, path)
    return node if n == len(path.split(".")) else default


def set_field(tree, path: str, value) -> None:
    """Set `tree.<path>` to `value`, adding absent groups (of the type of their parent)."""
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        if part not in node:
            node[part] = type(node)()
        node = node[part]
    node[leaf] = value


def paths(tree, prefix: str = "") -> list[str]:
    """Every field of `tree` as a dotted path, groups included ('model', 'model.norm')."""
    found = []
    for key, value in tree.items():
        found.append(prefix + key)
        if is_group(value):
            found += paths(value, f"{prefix}{key}.")
    return found
