"""Two real processes joined by jax.distributed on 127.0.0.1 (gloo CPU collectives).

Each reads its own data shard and trains a few steps; parameters must be identical in
both, equal to one process training on the same global batches, and the checkpoint the two
wrote together must restore in one process.
"""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from colorjax import data, parallel, train
from colorjax.checkpoint import TrainCheckpointer
from colorjax.objectives import make_objective

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from multiprocess_config import tiny_config  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 3


def flat(tree):
    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("model", ["unet", "unetgan"])
def test_two_processes_train_like_one(tmp_path, model):
    try:
        config = tiny_config(model)
        make_objective(config, STEPS)
    except (ImportError, ModuleNotFoundError, ValueError) as e:
        pytest.skip(f"{model} is not available: {e}")
    data.prepare_demo()  # prepared once here, not raced by the two workers
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        ["bash", str(REPO / "launch" / "local_cpu.sh"), "2", sys.executable,
         str(REPO / "tests" / "multiprocess_worker.py"), model, str(tmp_path), str(STEPS)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert "process 0 done" in out.stdout and "process 1 done" in out.stdout

    p0, p1 = (dict(np.load(tmp_path / f"params_{i}.npz")) for i in (0, 1))
    for k in p0:  # replicated parameters: bitwise the same in both processes
        np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)

    # The two shards are different data, and together they are the global batch.
    b0, b1 = (np.load(tmp_path / f"batches_{i}.npz") for i in (0, 1))
    assert not np.allclose(b0["l_0"], b1["l_0"])
    mesh = parallel.create_mesh(jax.devices()[:2])
    obj = make_objective(config, STEPS)
    state = train.create_state(config, obj, mesh, STEPS)
    step_fn = train.make_train_step(obj, mesh)
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    for i in range(STEPS):
        batch = {k: np.concatenate([b0[f"{k}_{i}"], b1[f"{k}_{i}"]]) for k in ("l", "ab")}
        state, _ = step_fn(state, jax.device_put(batch, parallel.data_sharded(mesh)), rng)
    single = flat(jax.device_get(state.params))
    for k in p0:
        np.testing.assert_allclose(single[k], p0[k], rtol=1e-5, atol=1e-6, err_msg=k)

    # The checkpoint written jointly by both processes restores here, in one process.
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"))
    assert ckpt.latest_step() == STEPS
    restored, data_state = ckpt.restore(STEPS, train.create_state(config, obj, mesh, STEPS))
    ckpt.close()
    assert data_state["next_batch"] == STEPS
    for k, v in flat(jax.device_get(restored.params)).items():
        np.testing.assert_array_equal(v, p0[k], err_msg=k)
