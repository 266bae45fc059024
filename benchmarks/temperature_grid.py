"""A classification run's annealed mean at several temperatures, as one grid, on the
embedded demo's validation photos (scikit-image's own images, which may be shown in docs).

    python benchmarks/temperature_grid.py WORKDIR OUT.png [T1,T2,...]

Rows: gray input, one row per temperature (default 1, 0.6, 0.38, 0.2, 0.1), ground truth.
"""

import json
import sys

import jax
import numpy as np

from colorjax import color, data
from colorjax.training.evaluate import save_grid
from demo_grid import _demo_validation
from trained_run import load_run


def main(workdir: str, out: str, temperatures=(1.0, 0.6, 0.38, 0.2, 0.1)):
    config, objective, state, step, mesh = load_run(workdir, -1, _demo_validation)
    if not hasattr(objective, "logits_with"):
        sys.exit(f"error: {workdir} is a {config.model.name!r} run; temperatures apply to "
                 "classification runs (configs/colorful.py)")
    batch = next(iter(data.create_eval_iterator(config.data, split="validation",
                                                global_batch_size=8, num_examples=8)))
    keep = batch["mask"] > 0
    l, ab_true = batch["l"][keep], batch["ab"][keep]
    variables = objective.inference_variables(state)
    predict = jax.jit(objective.predict_with)
    rows = [color.gray_rgb(l)]
    for t in temperatures:
        ab = np.asarray(predict(variables, l, jax.random.key(0), False, float(t)))
        rows.append(color.model_outputs_to_rgb(l, ab))
    rows.append(color.model_outputs_to_rgb(l, ab_true))
    save_grid(rows, out)
    print(json.dumps({"workdir": workdir, "step": step, "temperatures": list(temperatures),
                      "rows": ["gray"] + [f"T={t}" for t in temperatures] + ["truth"],
                      "grid": out}))


if __name__ == "__main__":
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()  # XLA:CPU's convolution choice, as the entry points make it
    jax.config.update("jax_platforms", "cpu")
    ts = tuple(float(t) for t in sys.argv[3].split(",")) if len(sys.argv) > 3 else None
    main(sys.argv[1], sys.argv[2], *([ts] if ts else []))
