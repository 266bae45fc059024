"""The FID Inception in Flax (colorjax/models/inception.py) computes what an independent
PyTorch implementation (benchmarks/torch_inception.py) computes, from weights that torch
saved in the zip format and colorjax's restricted reader loaded.

PyTorch lives in its own Python (`.venv-torch`, see benchmarks/torch_unet.py); without it
this test is skipped. COLORJAX_TORCH_PYTHON names another one.
"""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import torch_python, torch_python_works, xla_flags_for_tests

from colorjax.models import inception as inc

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_PYTHON = torch_python()
_torch_available = torch_python_works


# The float64 forward in a fresh process (x64 must be on from the start).
_FLOAT64_CHECK = """
import sys, numpy as np, jax, jax.numpy as jnp
from colorjax.models import inception as inc
v = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                 inc.load_inception(sys.argv[1], expected_sha256=None))
rgb = jnp.asarray(np.load(sys.argv[2])["rgb"], jnp.float64)
# One program (eagerly, each of ~300 ops compiles on its own: 5.1 s against 1.9 s).
out = jax.jit(lambda v, x: inc.FIDInceptionV3().apply(v, inc.preprocess(x)))(v, rgb)
np.savez(sys.argv[3], pool3=np.asarray(out["pool3"]), logits=np.asarray(out["logits"]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not _torch_available(), reason=f"no PyTorch Python at {TORCH_PYTHON}")
def test_flax_fid_inception_matches_the_torch_peer(tmp_path):
    # 2 images of 40x48: the forward resizes them to 299 (bilinear) as pytorch-fid does.
    rgb = np.random.default_rng(0).uniform(0, 1, (2, 40, 48, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", rgb=rgb)
    weights = tmp_path / "inception.pth"
    out = subprocess.run([TORCH_PYTHON, "benchmarks/torch_inception.py", "check",
                          f"--input={tmp_path / 'in.npz'}", f"--weights_out={weights}",
                          f"--out={tmp_path / 'torch.npz'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert weights.read_bytes()[:4] == b"PK\x03\x04"  # the zip format
    want = np.load(tmp_path / "torch.npz")

    # Weights torch made: no pytorch-fid hash, so the check is skipped from Python.
    variables = inc.load_inception(weights, expected_sha256=None)
    n_params = sum(np.size(a) for a in jax.tree.leaves(variables["params"]))
    assert n_params == int(want["num_params"]) == 23_850_960
    got = jax.device_get(inc.inception_apply(variables, rgb))
    assert got["pool3"].shape == (2, 2048) and got["logits"].shape == (2, 1008)
    # float32 vs float32: both round through ~95 layers; torch's own float32 differs from
    # its float64 by ~2e-4 on these activations (of size ~1), so the bound is 1e-3.
    for k in ("pool3", "logits"):
        np.testing.assert_allclose(got[k], want[k], atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(got[k], want[f"{k}_64"], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(got["logits_unbiased"],
                               want["logits"] - np.asarray(variables["params"]["fc"]["bias"]),
                               atol=1e-3, rtol=1e-3)

    # float64 on both sides: the same function to rounding.
    # XLA's own choice of convolution library, not the Eigen one colorjax's programs ask for
    # (conftest's XLA_FLAGS): Eigen's float64 convolutions made this forward 44 s against 6.
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu",
               XLA_FLAGS=xla_flags_for_tests(2))
    out = subprocess.run([sys.executable, "-c", _FLOAT64_CHECK, str(weights),
                          str(tmp_path / "in.npz"), str(tmp_path / "jax64.npz")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got64 = np.load(tmp_path / "jax64.npz")
    for k in ("pool3", "logits"):
        np.testing.assert_allclose(got64[k], want[f"{k}_64"], atol=1e-9, rtol=1e-9)
