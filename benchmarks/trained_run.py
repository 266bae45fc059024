"""Restore a training run's checkpoint, with the config saved beside it, for the analysis
scripts in this folder (single host)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax import parallel, train  # noqa: E402
from colorjax.checkpoint import TrainCheckpointer  # noqa: E402
from colorjax.objectives import make_objective  # noqa: E402


def load_run(workdir: str, step: int = -1, edit_config: Callable | None = None,
             temperature: float | None = None):
    """(config, objective, state, step, mesh) of `workdir`'s checkpoint `step` (-1 = latest).

    `edit_config(config)` may change the saved config (e.g. the eval data) before the
    objective is built from it; `temperature`, if given, replaces a diffusion run's
    config.sampler.temperature.
    """
    ckpt_dir = os.path.join(workdir, "checkpoints")
    ckpt = TrainCheckpointer(ckpt_dir)
    try:
        step = ckpt.latest_step() if step < 0 else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
        config = ckpt.saved_config(step)
        if edit_config is not None:
            edit_config(config)
        if temperature is not None:
            config.sampler.temperature = temperature
        mesh = parallel.create_mesh()
        objective = make_objective(config)
        state, _ = ckpt.restore(step, train.create_state(config, objective, mesh, 1))
    finally:
        ckpt.close()
    return config, objective, state, step, mesh
