"""Restore a training run's checkpoint, with the config saved beside it, for the analysis
scripts in this folder (single host)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorjax.platform import parallel  # noqa: E402
from colorjax.training.checkpoint import restore_run  # noqa: E402


def load_run(workdir: str, step: int = -1, edit_config: Callable | None = None,
             temperature: float | None = None):
    """(config, objective, state, step, mesh) of `workdir`'s checkpoint `step` (-1 = latest).

    `edit_config(config)` may change the saved config (e.g. the eval data) before the
    objective is built from it; `temperature`, if given, replaces a diffusion run's
    config.sampler.temperature. The state is restored by `checkpoint.restore_run`.
    """
    def prepare(config):
        if edit_config is not None:
            edit_config(config)
        if temperature is not None:
            config.sampler.temperature = temperature

    mesh = parallel.create_mesh()
    config, objective, state, step = restore_run(workdir, step, prepare_config=prepare,
                                                 sharding=parallel.replicated(mesh))
    return config, objective, state, step, mesh
