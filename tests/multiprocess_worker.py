"""One process of the multi-process test (started by launch/local_cpu.sh).

Trains `steps` steps of a tiny model on its own data shard with the real loop pieces, saves
a joint checkpoint, and dumps its copy of the parameters and its local batches.
Usage: multiprocess_worker.py MODEL OUTDIR STEPS
"""

import pathlib
import sys

from colorjax import parallel

parallel.initialize_distributed()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from colorjax import data, train  # noqa: E402
from colorjax.checkpoint import TrainCheckpointer  # noqa: E402
from colorjax.objectives import make_objective  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from multiprocess_config import tiny_config  # noqa: E402


def flat(tree):
    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def main(model: str, outdir: str, steps: int):
    out = pathlib.Path(outdir)
    pid = jax.process_index()
    assert jax.process_count() == 2 and jax.device_count() == 2, (jax.process_count(),
                                                                  jax.device_count())
    config = tiny_config(model)
    mesh = parallel.create_mesh()
    obj = make_objective(config, steps)
    state = train.create_state(config, obj, mesh, steps)
    it = data.create_train_iterator(config.data, global_batch_size=config.batch_size,
                                    seed=config.seed)
    step_fn = train.make_train_step(obj, mesh)
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    local_batches = []
    for _ in range(steps):
        local = next(it)
        local_batches.append(local)
        state, _ = step_fn(state, parallel.shard_batch(local, mesh), rng)
    ckpt = TrainCheckpointer(str(out / "checkpoints"))
    ckpt.save(steps, state, it.get_state(), config)
    ckpt.close()
    np.savez(out / f"params_{pid}.npz", **flat(parallel.to_host(state.params)))
    np.savez(out / f"batches_{pid}.npz",
             **{f"{k}_{i}": b[k] for i, b in enumerate(local_batches) for k in ("l", "ab")})
    print(f"process {pid} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
