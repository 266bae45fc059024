"""sha256 digests of the files a checkpoint or an export is made of, recorded when they are
written and checked before they are read: a flipped byte or a truncated array file is one
clear error naming the file, never weights used silently or a TensorStore traceback."""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest_tree(root: str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of every file under `root` (sorted, '/'-separated)."""
    out = {}
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel not in exclude:
                out[rel] = file_sha256(path)
    return out


def first_problem(root: str, recorded: dict[str, str]) -> str | None:
    """None if every recorded file exists under `root` with its digest; else what is wrong
    with the first one that does not ('state/d/ab12: missing' or '...: sha256 differs')."""
    for rel, digest in sorted(recorded.items()):
        path = os.path.join(root, *rel.split("/"))
        if not os.path.isfile(path):
            return f"{rel} is missing"
        try:
            actual = file_sha256(path)
        except OSError as e:
            return f"{rel} cannot be read ({e.strerror or e})"
        if actual != digest:
            return f"{rel} has changed since it was written (sha256 differs)"
    return None
