"""Which library runs convolutions on the CPU: XLA's Eigen kernels, not YNNPACK (set by programs).

jaxlib 0.12's XLA:CPU hands every large enough convolution to YNNPACK. Measured on three
2-core build machines (docs/benchmarks.md, "Convolutions: Eigen or YNNPACK"), XLA's own Eigen
convolutions make the training steps 16-43% faster on an AMD EPYC without AVX-512 (Zen 3),
and are within noise (0.97-1.04) on an AMD EPYC and an Intel Xeon with AVX-512. So colorjax
asks XLA for Eigen convolutions (`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`,
which keeps YNNPACK's other fusions) by adding the flag to XLA_FLAGS before JAX starts its CPU
backend. GPU backends ignore it. Programs do it, not the package: every `python -m colorjax.X`
entry point, the benchmarks and the test suite call `configure_program()` first; `import
colorjax` changes no process-wide setting, so a program of yours that imports colorjax runs
with XLA's defaults unless it calls `colorjax.platform.xla_cpu.configure()` before using JAX.

`COLORJAX_CPU_CONV=ynnpack` keeps XLA's choice; an XLA_FLAGS that already sets
`--xla_cpu_experimental_ynn_fusion_type` is left as it is. The flag is experimental, so it is
known to exist only in the pinned jaxlib (requirements.txt): XLA rejects unknown flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

ENV_VAR = "COLORJAX_CPU_CONV"
CHOICES = ("eigen", "ynnpack")
_FLAG_NAME = "--xla_cpu_experimental_ynn_fusion_type"
# "-" removes one fusion kind from XLA's default set (names: xla/debug_options_flags.cc).
EIGEN_CONVS = f"{_FLAG_NAME}=-individual_convolution"


def tuned_xla_flags(environ: Mapping[str, str]) -> str | None:
    """XLA_FLAGS as colorjax runs with them, or None when they need no change: Eigen
    convolutions added (the default, 'eigen'), or colorjax's own flag taken out ('ynnpack').
    An XLA_FLAGS that sets the flag itself is the user's choice and is kept.

    Raises ValueError for a COLORJAX_CPU_CONV that is neither 'eigen' nor 'ynnpack'.
    """
    choice = environ.get(ENV_VAR, "eigen").strip().lower() or "eigen"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR}={environ[ENV_VAR]!r}: allowed: {', '.join(CHOICES)}")
    flags = environ.get("XLA_FLAGS", "")
    tokens = flags.split()
    if choice == "ynnpack":  # e.g. a child of a process that had added it
        kept = [t for t in tokens if t != EIGEN_CONVS]
        return " ".join(kept) if kept != tokens else None
    if any(t.startswith(_FLAG_NAME) for t in tokens):
        return None
    return f"{flags} {EIGEN_CONVS}".strip()


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """Apply `tuned_xla_flags` to `environ` (this process's environment by default). It takes
    effect if JAX's CPU backend has not started yet; child processes inherit it."""
    flags = tuned_xla_flags(environ)
    if flags is not None:
        environ["XLA_FLAGS"] = flags


def configure_program(environ: MutableMapping[str, str] = os.environ) -> None:
    """`configure`, as the first thing a program does: a bad COLORJAX_CPU_CONV ends it with
    one line on stderr and exit status 2 (the config errors' convention)."""
    try:
        configure(environ)
    except ValueError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
