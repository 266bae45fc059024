"""The PyTorch peer of the UNet (benchmarks/torch_unet.py, for benchmarks only) computes
what colorjax's UNet computes, with colorjax's parameters loaded into it.

PyTorch lives in its own Python (`.venv-torch`, see benchmarks/torch_unet.py); without it
this test is skipped. COLORJAX_TORCH_PYTHON names another one.
"""

import os
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.unet import UNet

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_PYTHON = os.environ.get("COLORJAX_TORCH_PYTHON", str(REPO / ".venv-torch" / "bin" / "python"))


def _torch_available() -> bool:
    if not os.path.exists(TORCH_PYTHON):
        return False
    return subprocess.run([TORCH_PYTHON, "-c", "import torch"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _torch_available(), reason=f"no PyTorch Python at {TORCH_PYTHON}")
@pytest.mark.parametrize("features", [(8, 16, 32), (16, 32, 64, 128)])
def test_torch_unet_with_colorjax_parameters_gives_the_same_outputs(tmp_path, features):
    model = UNet(features=features)
    x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 1), minval=-1, maxval=1)
    variables = model.init(jax.random.key(1), x, train=False)
    # Not the initial values: biases, BatchNorm scales and statistics all away from 0 and 1.
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    variables = jax.tree.unflatten(tree, [
        0.5 + jnp.abs(0.5 * jax.random.normal(k, v.shape)) if p[-1].key == "var"  # well away from 0
        # kernels by a fifth of their spread (so activations keep their scale), the rest by 0.1
        else v + (0.2 * jnp.std(v) if jnp.std(v) > 0 else 0.1) * jax.random.normal(k, v.shape)
        for v, k, (p, _) in zip(leaves, keys, jax.tree_util.tree_flatten_with_path(variables)[0])])
    y_eval = model.apply(variables, x, train=False)
    y_train, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])

    flat = {"/".join(k.key for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
    np.savez(tmp_path / "params.npz", input=np.asarray(x), features=np.asarray(features), **flat)
    out = subprocess.run([TORCH_PYTHON, "benchmarks/torch_unet.py", "check",
                          f"--npz={tmp_path / 'params.npz'}", f"--out={tmp_path / 'out.npz'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    n_params = sum(v.size for k, v in flat.items() if k.startswith("params/"))
    assert int(got["num_params"]) == n_params
    np.testing.assert_allclose(got["eval"], y_eval, atol=1e-5)
    # Train mode normalizes with the batch's own statistics (3 images): rounding grows a little.
    np.testing.assert_allclose(got["train"], y_train, atol=1e-4)
