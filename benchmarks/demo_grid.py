"""Sample grid of a trained run on the embedded demo's validation photos (scikit-image's
own images, which may be shown in docs; the shared research datasets may not be copied).

    python benchmarks/demo_grid.py WORKDIR OUT.png [STEP]
"""

import json
import sys

import jax

from colorjax import parallel, train
from colorjax.checkpoint import TrainCheckpointer
from colorjax.evaluate import Evaluator
from colorjax.objectives import make_objective


def main(workdir: str, out: str, step: int = -1):
    ckpt_dir = f"{workdir}/checkpoints"
    ckpt = TrainCheckpointer(ckpt_dir)
    step = ckpt.latest_step() if step < 0 else step
    config = ckpt.saved_config(step)
    config.data.eval_name, config.data.eval_folder = "colorjax_demo", ""
    config.eval.split, config.eval.num_images, config.eval.batch_size = "validation", 8, 8
    mesh = parallel.create_mesh()
    objective = make_objective(config, 1)
    state, _ = ckpt.restore(step, train.create_state(config, objective, mesh, 1))
    ckpt.close()
    Evaluator(config, objective, mesh).sample_grid(state, out)
    print(json.dumps({"workdir": workdir, "step": step, "grid": out}))


if __name__ == "__main__":
    jax.config.update("jax_platforms", "cpu")
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else -1)
