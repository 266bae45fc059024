"""`precision="bfloat16_convs"`: convolutions and dense layers in bfloat16, the rest in float32.

PyTorch's CPU autocast computes convolutions and matmuls in bfloat16 and leaves the
other ops to their inputs' dtype. colorjax's `precision="bfloat16"` computes the whole
network in bfloat16 instead, which suits a GPU but not XLA:CPU: there its bfloat16
elementwise loops (normalization, activations, converts) are slower than float32 ones, and
the whole step slower than in float32. On a CPU with AMX (`amx_bf16`), oneDNN's custom calls
run a bfloat16 convolution 5-11x and its gradients 1.8-2.4x faster than float32, so
computing just those in bfloat16, every normalization, activation, loss and update in
float32, trains the UNets 1.4x faster there (docs/benchmarks.md, "bfloat16 convolutions on
AMX").

`convs_in_bfloat16()` is a Flax method interceptor: while it is active, every
`nn.Conv`, `nn.ConvTranspose`, `nn.Dense` and `blocks.ConvTranspose4x4` whose `dtype` is
unset computes in bfloat16 (inputs and weights cast down, float32 accumulation inside the
library) and hands float32 back. Grouped and depthwise convolutions are left in float32:
they run as elementwise loops on CPU (`blocks.depthwise_conv`), where bfloat16 is slow.
Parameters, their gradients and BatchNorm statistics stay float32, so checkpoints are those
of a float32 run.
"""

from __future__ import annotations

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp

NAME = "bfloat16_convs"
_LAYERS: tuple[type, ...] = (nn.Conv, nn.ConvTranspose, nn.Dense)


def _computes_in_bfloat16(module) -> bool:
    from colorjax.models.blocks import ConvTranspose4x4  # blocks imports nothing from here

    if not isinstance(module, _LAYERS + (ConvTranspose4x4,)):
        return False
    if getattr(module, "dtype", None) is not None:  # the model chose its own dtype
        return False
    return getattr(module, "feature_group_count", 1) == 1


def _to_float32(tree):
    return jax.tree.map(
        lambda x: x.astype(jnp.float32) if getattr(x, "dtype", None) == jnp.bfloat16 else x,
        tree)


def _interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not _computes_in_bfloat16(module):
        return next_fun(*args, **kwargs)
    # The layers read `self.dtype` when they cast their inputs and weights (Flax's
    # promote_dtype): set it for this one call. Modules are frozen dataclasses, hence
    # object.__setattr__; the field is restored however the call ends.
    object.__setattr__(module, "dtype", jnp.bfloat16)
    try:
        out = next_fun(*args, **kwargs)
    finally:
        object.__setattr__(module, "dtype", None)
    return _to_float32(out)


@contextlib.contextmanager
def convs_in_bfloat16():
    """Within the block, Flax convolutions and dense layers compute in bfloat16 (see the
    module docstring). Takes effect where a model is traced (inside `model.apply`)."""
    with nn.intercept_methods(_interceptor):
        yield
