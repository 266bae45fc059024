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

The choice can depend on the network (`configure_for_model`, called by `colorize` and
`serve` once they know the export's model, before JAX starts its backend): DDColor runs
faster under YNNPACK on CPUs with AVX-512 (DDColor-L 1.2-1.3x when its 7x7 depthwise
convolutions were XLA's; DDColor-T 1.05-1.14x with them as `blocks.depthwise_conv`,
docs/benchmarks.md), so there `auto` (the default) leaves
XLA's YNNPACK in place for it; every other case keeps Eigen, the measured choice for the
UNets' training step on every machine kind (and unmeasured for DDColor without AVX-512).

`COLORJAX_CPU_CONV=eigen|ynnpack` fixes the choice; an XLA_FLAGS that already sets
`--xla_cpu_experimental_ynn_fusion_type` is left as it is. The flag is experimental, so it is
known to exist only in the pinned jaxlib (requirements.txt): XLA rejects unknown flags.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, MutableMapping

ENV_VAR = "COLORJAX_CPU_CONV"
CHOICES = ("auto", "eigen", "ynnpack")
# Models (config.model.name) whose inference is faster with YNNPACK's convolutions on a CPU
# with AVX-512: DDColor-L 3.85-4.08 s against Eigen's 4.90 s a 512 px image (AMD EPYC with
# AVX-512, 2026-12-07; docs/benchmarks.md, "DDColor and DeOldify against their authors'").
YNNPACK_MODELS = frozenset({"ddcolor"})
_FLAG_NAME = "--xla_cpu_experimental_ynn_fusion_type"
# "-" removes one fusion kind from XLA's default set (names: xla/debug_options_flags.cc).
EIGEN_CONVS = f"{_FLAG_NAME}=-individual_convolution"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def automatic_choice(model: str | None, flags: frozenset[str] | None = None) -> str:
    """'ynnpack' for a model in YNNPACK_MODELS on a CPU with AVX-512, else 'eigen'."""
    if model in YNNPACK_MODELS and "avx512f" in (cpu_flags() if flags is None else flags):
        return "ynnpack"
    return "eigen"


def resolved_choice(environ: Mapping[str, str], model: str | None = None) -> str:
    """'eigen' or 'ynnpack': COLORJAX_CPU_CONV's, or the automatic one for `model` (None:
    not known yet). Raises ValueError for a value not in CHOICES."""
    choice = environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR}={environ[ENV_VAR]!r}: allowed: {', '.join(CHOICES)}")
    return automatic_choice(model) if choice == "auto" else choice


def tuned_xla_flags(environ: Mapping[str, str], model: str | None = None) -> str | None:
    """XLA_FLAGS as colorjax runs `model` with them, or None when they need no change: Eigen
    convolutions added ('eigen'), or colorjax's own flag taken out ('ynnpack'); the choice
    is `resolved_choice`'s. An XLA_FLAGS that sets the flag itself is the user's choice and
    is kept.

    Raises ValueError for a COLORJAX_CPU_CONV not in CHOICES.
    """
    return _flags_for(resolved_choice(environ, model), environ.get("XLA_FLAGS", ""))


def _flags_for(choice: str, flags: str) -> str | None:
    """`flags` (XLA_FLAGS) for `choice` ('eigen' | 'ynnpack'), None when they need no change."""
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


def configure_for_model(model: str, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """`configure` for a program that now knows which model it runs (colorize, serve),
    while JAX's backend has not started (it reads XLA_FLAGS once): returns the choice made,
    or None when it is too late (the backend is up) or an invalid COLORJAX_CPU_CONV (the
    program's start reported that already)."""
    from jax._src import xla_bridge  # the one public-enough way to ask: no backend started

    if xla_bridge.backends_are_initialized():
        return None
    try:
        choice = resolved_choice(environ, model)
    except ValueError:
        return None
    flags = _flags_for(choice, environ.get("XLA_FLAGS", ""))
    if flags is not None:
        environ["XLA_FLAGS"] = flags
    return choice


# oneDNN's custom calls for XLA:CPU's convolutions and dots. On a CPU with AMX they run
# bfloat16 convolutions 5-11x and their gradients 1.8-2.4x faster than float32 (Intel Xeon,
# 2026-12-07; docs/benchmarks.md, "bfloat16 convolutions on AMX"), but float32 ones no
# faster than Eigen (0.85x for the default-width UNet's step), so programs turn them on only
# for the precision that computes convolutions in bfloat16.
ONEDNN_CALLS = "--xla_cpu_experimental_onednn_custom_call=true"
_ONEDNN_FLAG_NAME = ONEDNN_CALLS.split("=")[0]
# models/conv_precision.py's NAME (a test keeps them equal): this module imports no Flax.
BFLOAT16_CONVS = "bfloat16_convs"


# `precision="auto"` (the configs' default): bfloat16_convs on a CPU with AMX-BF16, where
# it trains the UNets 1.4x and the diffusion UNet 1.4x faster than float32 with metrics on
# bsds500/val within float32's seed-to-seed spread (docs/benchmarks.md, "bfloat16
# convolutions on AMX"); float32 on every other CPU (no AMX: bfloat16 is slower there) and
# on accelerators (objectives/precision.py). COLORJAX_AUTO_PRECISION fixes the choice.
AUTO_PRECISION_ENV = "COLORJAX_AUTO_PRECISION"
AUTO_PRECISIONS = ("float32", BFLOAT16_CONVS)


def automatic_precision(environ: Mapping[str, str] = os.environ,
                        flags: frozenset[str] | None = None) -> str:
    """What `precision="auto"` computes in on this CPU: COLORJAX_AUTO_PRECISION's value, or
    'bfloat16_convs' where the CPU has `amx_bf16`, else 'float32'. Raises ValueError for a
    COLORJAX_AUTO_PRECISION not in AUTO_PRECISIONS."""
    chosen = environ.get(AUTO_PRECISION_ENV, "").strip().lower()
    if chosen:
        if chosen not in AUTO_PRECISIONS:
            raise ValueError(f"{AUTO_PRECISION_ENV}={environ[AUTO_PRECISION_ENV]!r}: allowed: "
                             f"{', '.join(AUTO_PRECISIONS)}")
        return chosen
    return BFLOAT16_CONVS if "amx_bf16" in (cpu_flags() if flags is None else flags) \
        else "float32"


def onednn_calls_on(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether XLA_FLAGS turns oneDNN's custom calls on (as this process's backend reads it)."""
    return ONEDNN_CALLS in environ.get("XLA_FLAGS", "").split()


def quiet_uncacheable_programs() -> None:
    """JAX warns for every program it cannot write to its persistent compilation cache, and
    with oneDNN's custom calls (bfloat16_convs) no program can be (XLA:CPU cannot serialize
    them: "std::bad_alloc"). The run is correct and only compiles again next time
    (docs/benchmarks.md, "bfloat16 convolutions on AMX"), so programs that turned the calls
    on drop that one warning."""
    import warnings

    warnings.filterwarnings("ignore", message="Error writing persistent compilation cache entry",
                            category=UserWarning)


def configure_for_precision(precision: str | None,
                            environ: MutableMapping[str, str] = os.environ) -> bool:
    """Before JAX starts its backend: for `precision="bfloat16_convs"` (or "auto" where that
    is its choice), let oneDNN run the convolutions (adds ONEDNN_CALLS to XLA_FLAGS unless
    they set it already). Returns whether XLA_FLAGS now asks for it; False too when the
    backend is already up (too late). When it does, for this process's own environment,
    also `quiet_uncacheable_programs`. Raises ValueError for a bad COLORJAX_AUTO_PRECISION."""
    from jax._src import xla_bridge

    if precision == "auto":
        precision = automatic_precision(environ)
    flags = environ.get("XLA_FLAGS", "")
    if precision == BFLOAT16_CONVS and _ONEDNN_FLAG_NAME not in flags:
        if xla_bridge.backends_are_initialized():
            return False
        environ["XLA_FLAGS"] = f"{flags} {ONEDNN_CALLS}".strip()
    on = onednn_calls_on(environ)
    if on and environ is os.environ:
        quiet_uncacheable_programs()
    return on


def configure_for_export(path: str, precision: str | None = None,
                         environ: MutableMapping[str, str] = os.environ) -> str | None:
    """`configure_for_model` with the model an export's metadata.json names, and
    `configure_for_precision` with `precision` (None: its config.json's). Returns the
    convolution choice, None when the export cannot be read (loading it reports why)."""
    path = os.path.expanduser(path)
    try:
        with open(os.path.join(path, "metadata.json")) as f:
            model = json.load(f)["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if precision is None:
        try:
            with open(os.path.join(path, "config.json")) as f:
                precision = json.load(f).get("precision")
        except (OSError, ValueError, AttributeError):
            precision = None
    # Only a stated bfloat16_convs: for "auto" inference stays float32. At the working sizes
    # of colorjax's own exports bfloat16 convolutions do not speed a photo up (64-512 px,
    # docs/benchmarks.md), and programs with oneDNN's calls cannot be kept in JAX's
    # persistent compilation cache, so every run would compile again.
    if precision == BFLOAT16_CONVS:
        configure_for_precision(precision, environ)
    return configure_for_model(str(model), environ)


def configure_program(environ: MutableMapping[str, str] = os.environ) -> None:
    """`configure`, as the first thing a program does: a bad COLORJAX_CPU_CONV ends it with
    one line on stderr and exit status 2 (the config errors' convention). Also NumPy's BLAS
    on one thread (`host_threads`), which must happen before NumPy is imported."""
    from colorjax.platform import host_threads

    host_threads.configure(environ)
    try:
        configure(environ)
    except ValueError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
