"""sha256 digests of the files a checkpoint or an export is made of, recorded when they are
written and checked before they are read: a flipped byte or a truncated array file is one
clear error naming the file, never weights used silently or a TensorStore traceback."""

from __future__ import annotations

import hashlib
import os
import re

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


# orbax wraps TensorStore read errors in a message that prints a method object, not the
# spec it meant ("See full TensorStore details: <bound method pybind11_...spec of ...>").
_NOISE = re.compile(r"\s*(See full TensorStore details:.*|<bound method .*)$")


def error_line(e: BaseException, limit: int = 300) -> str:
    """One clean line for an error from reading stored files (orbax, TensorStore, JSON):
    'Type: message' of the innermost cause (the one naming the file), without orbax's
    unrendered method objects, at most `limit` characters."""
    while e.__cause__ is not None:
        e = e.__cause__
    first = (str(e).strip().splitlines() or [""])[0]
    text = _NOISE.sub("", first).strip()
    line = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


# --- one file's digest beside it, in `sha256sum` format -----------------------------------

SIDECAR = ".sha256"


def write_sidecar(path: str) -> str:
    """Write `path`.sha256, `sha256sum`'s line for `path` (so `sha256sum -c` checks it too);
    returns its path."""
    sidecar = path + SIDECAR
    with open(sidecar, "w") as f:
        f.write(f"{file_sha256(path)}  {os.path.basename(path)}\n")
    return sidecar


def sidecar_problem(path: str) -> str | None:
    """None when `path`.sha256 exists and holds `path`'s digest; else what is wrong."""
    name, sidecar = os.path.basename(path), os.path.basename(path) + SIDECAR
    try:
        with open(path + SIDECAR) as f:
            fields = f.read(1024).split()
    except FileNotFoundError:
        return f"{sidecar} is missing"
    except (OSError, ValueError) as e:  # ValueError: not text
        return f"{sidecar} cannot be read ({getattr(e, 'strerror', None) or e})"
    if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[0]) \
            or fields[1].lstrip("*") != name:
        return f"{sidecar} is not a sha256 line for {name}"
    try:
        actual = file_sha256(path)
    except OSError as e:
        return f"{name} cannot be read ({e.strerror or e})"
    if actual != fields[0]:
        return f"{name} has changed since it was written (sha256 differs)"
    return None
