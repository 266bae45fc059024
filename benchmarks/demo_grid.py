"""Sample grid of a trained run on the embedded demo's validation photos (scikit-image's
own images, which may be shown in docs; the shared research datasets may not be copied).

    python benchmarks/demo_grid.py WORKDIR OUT.png [STEP [TEMPERATURE]]

TEMPERATURE overrides a diffusion run's config.sampler.temperature.
"""

import json
import sys

import jax

from colorjax.training.evaluate import Evaluator
from trained_run import load_run


def _demo_validation(config):
    config.data.eval_name, config.data.eval_folder = "colorjax_demo", ""
    config.eval.split, config.eval.num_images, config.eval.batch_size = "validation", 8, 8


def main(workdir: str, out: str, step: int = -1, temperature: float | None = None):
    config, objective, state, step, mesh = load_run(workdir, step, _demo_validation,
                                                    temperature)
    Evaluator(config, objective, mesh).sample_grid(state, out)
    print(json.dumps({"workdir": workdir, "step": step, "grid": out}))


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    jax.config.update("jax_platforms", "cpu")
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else -1,
         float(sys.argv[4]) if len(sys.argv) > 4 else None)
