"""`config.precision`: the dtype the networks compute in; the weights stay float32.

`auto` (the default: bfloat16_convs on CPUs with AMX, float32 elsewhere); `float32`;
`bfloat16` (the whole network in bfloat16: inputs and weights cast down, every
output cast back); `bfloat16_convs` (only convolutions and dense layers in bfloat16, the
rest float32: `colorjax.models.conv_precision`, the fast mixed precision on CPUs with AMX).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax.config import checks
from colorjax.models import conv_precision
from colorjax.platform import xla_cpu

# auto (the default: `resolve`); float32; bfloat16 (the whole network, float32 weights);
# bfloat16_convs (convolutions and dense layers in bfloat16, the rest float32:
# models/conv_precision.py).
PRECISIONS = ("auto", "float32", "bfloat16", conv_precision.NAME)


def resolve(precision: str) -> str:
    """The precision `precision` names here: "auto" is bfloat16_convs on a CPU backend whose
    CPU has AMX-BF16 (`xla_cpu.automatic_precision`) in a process that turned oneDNN's
    custom calls on, float32 elsewhere (accelerators, other CPUs, library use)."""
    if precision != "auto":
        return precision
    if jax.default_backend() != "cpu":
        return "float32"
    try:
        chosen = xla_cpu.automatic_precision()
    except ValueError as e:  # a bad COLORJAX_AUTO_PRECISION
        raise checks.ConfigError("config.precision", f"'auto': {e}",
                                 str(list(xla_cpu.AUTO_PRECISIONS))) from None
    # bfloat16 convolutions pay only through oneDNN's custom calls, which a program asks for
    # before JAX starts (xla_cpu.configure_for_precision); a script that did not runs float32.
    if chosen == conv_precision.NAME and not xla_cpu.onednn_calls_on():
        return "float32"
    return chosen


def compute_dtype(config):
    """`config.precision`: the dtype the networks compute in (parameters stay float32), or
    the name `bfloat16_convs` for that mixed mode (`apply_in_precision` reads both)."""
    if config.precision not in PRECISIONS:
        raise checks.ConfigError("config.precision", f"{config.precision!r} is not allowed",
                                 str(list(PRECISIONS)))
    precision = resolve(config.precision)
    if precision == conv_precision.NAME:
        return conv_precision.NAME
    return jnp.dtype(precision)


def cast_floats(tree, dtype):
    """Cast the floating-point leaves of a pytree (integers, keys and None untouched)."""
    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, dtype)
        return x
    return jax.tree.map(cast, tree)


def apply_in_precision(model, variables, *args, dtype=jnp.float32, **kwargs):
    """`model.apply` computing in `dtype` with float32 master weights (mixed precision).

    For bfloat16 the parameters and inputs are cast down for the forward pass (gradients
    flow back to the float32 parameters through the cast) and every output, including
    updated BatchNorm statistics, is cast back to float32, so losses, optimizer state and
    checkpoints stay float32. `dtype="bfloat16_convs"`: only the convolutions and dense
    layers compute in bfloat16 (`conv_precision.convs_in_bfloat16`).
    """
    if isinstance(dtype, str) and dtype == conv_precision.NAME:
        with conv_precision.convs_in_bfloat16():
            return model.apply(variables, *args, **kwargs)
    if dtype == jnp.float32:
        return model.apply(variables, *args, **kwargs)
    out = model.apply(cast_floats(variables, dtype), *cast_floats(args, dtype), **kwargs)
    return cast_floats(out, jnp.float32)
