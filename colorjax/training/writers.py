"""Where training metrics go: stdout, `workdir/metrics.jsonl`, TensorBoard, optionally W&B.

Only process 0 writes; the others get a writer that does nothing.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np

from colorjax.platform import progress
from colorjax.config.checks import ConfigError


def _scalar(v) -> float:
    return float(np.asarray(v))


class MetricWriter:
    def __init__(self, workdir: str, config=None, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        try:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        except ImportError:  # TensorBoard events are optional
            self._tb = None
        if config is not None and config.wandb.enabled:
            self._wandb = _start_wandb(config, workdir)

    def write(self, step: int, metrics: dict, prefix: str = "train", echo: bool = True):
        if not self.enabled:
            return
        values = {k: _scalar(v) for k, v in metrics.items()}
        record = {"step": int(step), "split": prefix, "time": time.time(), **values}
        self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                if math.isfinite(v):
                    self._tb.add_scalar(f"{prefix}/{k}", v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"{prefix}/{k}": v for k, v in values.items()}, step=step)
        if echo:
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            progress.say(f"[{prefix}] step {step}: {shown}")  # above the progress bar

    def close(self):
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _start_wandb(config, workdir):
    try:
        import wandb
    except ImportError as e:
        raise ConfigError("config.wandb.enabled", "True but wandb is not installed: pip "
                          "install wandb (or set --config.wandb.enabled=False)") from e
    return wandb.init(project=config.wandb.project, entity=config.wandb.entity or None,
                      config=config.to_dict(), dir=workdir, resume="allow",
                      id=os.path.basename(os.path.abspath(workdir)))
