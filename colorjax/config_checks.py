"""Config validation that runs before anything is compiled: every error names the field
and what it may be."""

from __future__ import annotations

from colorjax import data, parallel
from colorjax.metrics.lpips import NETS as LPIPS_NETS
from colorjax.objectives import MODEL_FAMILIES, make_objective
from colorjax.objectives.base import LOSSES, OPTIMIZERS, SCHEDULES

_POSITIVE_INTS = ("batch_size", "log_every", "eval_every", "checkpoint_every",
                  "keep_checkpoints")


def _check_choice(value, allowed, field):
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: {list(allowed)}")


def validate_config(config, training: bool = True) -> None:
    """Raise ValueError naming the bad field; cheap (no compilation, no data reading)."""
    _check_choice(config.model.name, sorted(MODEL_FAMILIES), "config.model.name")
    for field in _POSITIVE_INTS:
        if int(config[field]) <= 0:
            raise ValueError(f"config.{field}={config[field]} must be a positive integer")
    if config.num_epochs <= 0 and config.num_train_steps <= 0:
        raise ValueError("config.num_train_steps must be > 0 (or set config.num_epochs > 0)")
    _check_choice(config.loss, LOSSES, "config.loss")
    _check_choice(config.optimizer.name, OPTIMIZERS, "config.optimizer.name")
    _check_choice(config.optimizer.schedule, SCHEDULES, "config.optimizer.schedule")
    _check_choice(config.eval.lpips_net, LPIPS_NETS, "config.eval.lpips_net")
    if config.optimizer.learning_rate <= 0:
        raise ValueError(f"config.optimizer.learning_rate={config.optimizer.learning_rate} "
                         "must be > 0")
    parallel.check_batch_divisible(config.batch_size, "config.batch_size")
    parallel.check_batch_divisible(config.eval.batch_size, "config.eval.batch_size")
    if config.eval.num_images <= 0:
        raise ValueError(f"config.eval.num_images={config.eval.num_images} must be > 0")

    size = int(config.data.image_size)
    factor = getattr(make_objective(config, 1), "downsample_factor", 1)
    if size <= 0 or size % factor:
        raise ValueError(
            f"config.data.image_size={size} cannot be downsampled evenly by "
            f"{config.model.name!r}, which halves the image to 1/{factor}; allowed: "
            f"positive multiples of {factor} (e.g. {max(factor, 32 // factor * factor)}, "
            f"{4 * factor}, {8 * factor})")
    del training  # the train data is checked for eval runs too: its config must be valid
    data.validate_data_config(config.data, split=config.eval.split)
