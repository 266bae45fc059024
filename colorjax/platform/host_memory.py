"""Transparent huge pages for XLA's per-step host buffers (glibc's malloc, set at start-up).

On the CPU, XLA allocates each run of a compiled program its temporary buffer and frees it
when the run ends: 128 MiB for the `:cpu` UNet's training step at 64 px, batch 16. glibc
serves an allocation that large with a fresh `mmap` every time, so each step faults in every
4 KiB page of it again (about 33,000 page faults and 70-90 ms of kernel time per step on
the 2-core build machine; docs/benchmarks.md). glibc's tunable `glibc.malloc.hugetlb=1`
(glibc 2.35 and later) makes malloc advise transparent huge pages for such mappings, so the
kernel maps 2 MiB per fault instead of 4 KiB.

glibc reads its tunables only when a process starts, so `python -m colorjax.main`
re-executes itself once, with `GLIBC_TUNABLES` extended, before anything else is imported
(about 60 ms more at start-up).
`COLORJAX_MALLOC=default` (or a `GLIBC_TUNABLES` that already sets `glibc.malloc.hugetlb`)
leaves malloc as it is.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

ENV_VAR = "COLORJAX_MALLOC"
CHOICES = ("hugepages", "default")
_HUGETLB_NAME = "glibc.malloc.hugetlb"
HUGETLB = f"{_HUGETLB_NAME}=1"
_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library this process runs on, or None if it is not glibc."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    except (AttributeError, ValueError, OSError):
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if name == "glibc" and m else None


def huge_pages_possible(path: str = _THP_ENABLED) -> bool:
    """Whether the kernel has transparent huge pages on ('always' or 'madvise')."""
    try:
        with open(path) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def tuned_environ(environ: Mapping[str, str], *, glibc: tuple[int, int] | None = None,
                  thp: bool | None = None) -> dict[str, str] | None:
    """`environ` with `glibc.malloc.hugetlb=1` added to GLIBC_TUNABLES, or None when there is
    nothing to change: opted out, already set, not glibc >= 2.35, or no huge pages.

    Raises ValueError for a COLORJAX_MALLOC that is neither 'hugepages' nor 'default'.
    """
    choice = environ.get(ENV_VAR, "hugepages").strip().lower() or "hugepages"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR}={environ[ENV_VAR]!r}: allowed: {', '.join(CHOICES)}")
    tunables = environ.get("GLIBC_TUNABLES", "")
    if choice == "default" or _HUGETLB_NAME in tunables:
        return None
    glibc = glibc_version() if glibc is None else glibc
    if glibc is None or glibc < (2, 35):  # older glibc has no hugetlb tunable
        return None
    if not (huge_pages_possible() if thp is None else thp):
        return None
    return dict(environ, GLIBC_TUNABLES=f"{tunables}:{HUGETLB}" if tunables else HUGETLB)


def untuned_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` as an untuned program sees it: no `glibc.malloc.hugetlb` in GLIBC_TUNABLES
    (its other tunables kept) and no COLORJAX_MALLOC."""
    env = {k: v for k, v in environ.items() if k not in ("GLIBC_TUNABLES", ENV_VAR)}
    kept = [t for t in environ.get("GLIBC_TUNABLES", "").split(":")
            if t and not t.startswith(_HUGETLB_NAME)]
    if kept:
        env["GLIBC_TUNABLES"] = ":".join(kept)
    return env


def reexec_with_huge_pages() -> None:
    """Replace this process by itself (same interpreter, same arguments, same pid) with
    `tuned_environ`'s environment; returns at once when there is nothing to change."""
    try:
        env = tuned_environ(os.environ)
    except ValueError as e:  # a bad COLORJAX_MALLOC: one line, exit status 2, like bad flags
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if env is None or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # e.g. an interpreter that cannot be started again: run untuned
        return
