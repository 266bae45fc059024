"""`blocks.GroupNorm` (the diffusion UNet's, with its SiLU) computes what `nn.GroupNorm`
followed by the activation does: the same variables, outputs, gradients and dtype."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.blocks import GroupNorm, activation


def _moved(variables, seed=2):
    """The variables with scale and bias moved off their starts."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [l + 0.3 * jnp.abs(jax.random.normal(k, l.shape))
                                     for l, k in zip(leaves, keys)])


def _assert_trees_close(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(v, np.float32), np.asarray(u, np.float32), **tol)


class GroupWrap(nn.Module):
    """flax's GroupNorm then the activation (old) or blocks.GroupNorm(act=...) (new)."""

    groups: int
    act: str
    old: bool = False

    @nn.compact
    def __call__(self, x):
        if self.old:
            return activation(self.act)(nn.GroupNorm(num_groups=self.groups)(x))
        return GroupNorm(num_groups=self.groups, act=self.act)(x)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["silu", "none"])
@pytest.mark.parametrize("shape,groups", [((2, 6, 5, 8), 4), ((3, 4, 4, 6), 6), ((2, 9, 4), 1)])
def test_group_norm_matches_flax(act, shape, groups):
    x = 1.5 + 2.0 * jax.random.normal(jax.random.key(0), shape)
    old, new = GroupWrap(groups, act, old=True), GroupWrap(groups, act)
    v_old, v_new = old.init(jax.random.key(1), x), new.init(jax.random.key(1), x)
    _assert_trees_close(v_old, v_new, rtol=0, atol=0)  # GroupNorm_0/{scale,bias}
    params = _moved(v_old)
    np.testing.assert_allclose(new.apply(params, x), old.apply(params, x), rtol=1e-5,
                               atol=1e-5)
    target = jax.random.normal(jax.random.key(3), shape)
    loss = lambda m: lambda p, x: jnp.sum((m.apply(p, x) - target) ** 2)  # noqa: E731
    _assert_trees_close(jax.grad(loss(old), argnums=(0, 1))(params, x),
                        jax.grad(loss(new), argnums=(0, 1))(params, x), rtol=1e-4, atol=1e-4)
    xb = x.astype(jnp.bfloat16)
    assert new.apply(params, xb).dtype == old.apply(params, xb).dtype


def test_group_norm_names_a_bad_group_count():
    with pytest.raises(ValueError, match="5 groups must divide 8 channels"):
        GroupNorm(num_groups=5).init(jax.random.key(0), jnp.ones((1, 2, 2, 8)))
