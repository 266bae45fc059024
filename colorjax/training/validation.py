"""Config validation that runs before anything is compiled: every error is one
`ConfigError` line, `config.<field>: <what is wrong>; allowed: <...>`.

The fields every run reads (optimizer, precision, eval, batch sizes, step counts) are
checked here; the fields of a training family by that family's `validate(config)`, found
through `colorjax.config.registry`. Every check is one of `colorjax.config.checks`, and the allowed
values of each enumerated field are imported from the code that uses them, so a new norm,
loss or sampler is allowed here as soon as it exists there.
"""

from __future__ import annotations

import difflib

from colorjax import data
from colorjax.config import checks
from colorjax.config import fields as config_fields
from colorjax.platform import parallel
from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.models.pretrained import NETS as LPIPS_NETS
from colorjax.objectives.base import OPTIMIZERS, PRECISIONS, SCHEDULES, check_optimizer

__all__ = ["ConfigError", "check_enumerated", "closest_field", "unknown_field_error",
           "validate_config"]

_POSITIVE_INTS = ("batch_size", "log_every", "eval_every", "checkpoint_every",
                  "keep_checkpoints")


# --- unknown fields -----------------------------------------------------------------------


def _field_paths(config) -> list[str]:
    """Every field of `config` as a dotted path, groups included ('model', 'model.norm')."""
    return config_fields.paths(config)


def closest_field(config, path: str) -> str | None:
    """The known field nearest to `path`: same last name elsewhere, else by spelling."""
    paths = _field_paths(config)
    leaf = path.rsplit(".", 1)[-1]
    same_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    close = difflib.get_close_matches(path, paths, n=1, cutoff=0.0)
    return close[0] if close else None


def unknown_field_error(config, path: str) -> ConfigError | None:
    """ConfigError naming `config.<path>` and its closest known field; None if it exists."""
    parts = path.split(".")
    n, node = config_fields.walk(config, path)
    if n == len(parts):
        return None
    walked = ".".join(["config", *parts[:n]])
    if not config_fields.is_group(node):
        return ConfigError(f"config.{path}", f"{walked} is a value, not a group of fields",
                           f"the field {walked} itself")
    near = closest_field(config, path)
    hint = f" (closest known field: config.{near})" if near else ""
    return ConfigError(f"config.{path}", f"no such field{hint}",
                       f"the fields of {walked}: {', '.join(sorted(node.keys()))}")


# --- the fields every run reads -----------------------------------------------------------


def check_enumerated(config) -> None:
    """The model name, and the enumerated fields every family shares (where present)."""
    if not isinstance(config.model.get("objective", ""), str):
        raise ConfigError("config.model.objective",
                          f"{config.model.objective!r} is not a module path",
                          "a dotted module path, or \"\" for colorjax's own families")
    registry.spec(config.model)
    for field, allowed in (("optimizer.name", OPTIMIZERS), ("optimizer.schedule", SCHEDULES),
                           ("precision", PRECISIONS), ("eval.lpips_net", LPIPS_NETS)):
        checks.choice(config, field, allowed, default=None)


def _multiples_near(size: int, factor: int) -> str:
    """The multiples of `factor` on either side of `size`: what the user probably meant."""
    below = size // factor * factor
    nearest = [m for m in (below, below + factor) if m > 0]
    return " or ".join(str(m) for m in nearest)


def _check_counts(config) -> None:
    for field in _POSITIVE_INTS:
        checks.integer(config, field, low=1)
    checks.integer(config, "eval.batch_size", low=1)
    checks.integer(config, "num_epochs", low=0, note="(0 = config.num_train_steps decides)")
    checks.integer(config, "num_train_steps", low=0)
    if config.num_epochs <= 0 and config.num_train_steps <= 0:
        raise ConfigError("config.num_train_steps", f"{config.num_train_steps} is not allowed",
                          "> 0 (or config.num_epochs > 0)")
    # jax.random.key keeps a seed's low 32 bits: larger seeds would repeat smaller ones.
    checks.integer(config, "seed", low=0, high=2**32, high_open=True)
    check_optimizer(config)
    # 1 would freeze the EMA copy at its initial values, above 1 it diverges to NaN.
    checks.number(config, "ema_decay", low=0.0, high=1.0, high_open=True,
                  note="(0 = no EMA copy of the parameters)")
    checks.integer(config, "eval.num_images", low=1)
    checks.integer(config, "eval.num_examples", low=0, note="(0 = the whole split)")
    checks.integer(config, "eval.step", low=-1, note="(-1 = the latest checkpoint)")


def _check_hints(config) -> None:
    """config.model.hints (a bool) and config.eval.num_hints (hint models only)."""
    hints = checks.boolean(config, "model.hints", default=False,
                           note="(colour hints as extra input planes)")
    checks.boolean(config, "model.hint_propagation", default=False,
                   note="(hint models: also read the hints spread along the image)")
    n = checks.integer(config, "eval.num_hints", low=0, default=0, note="(0 = no hints)")
    if n and not hints:
        raise ConfigError("config.eval.num_hints", f"{n} needs a hint model",
                          "0 (or config.model.hints=True)")


def _check_image_size(config, factor: int) -> None:
    """image_size must halve evenly as often as the network halves it (`factor` times)."""
    size = checks.integer(config, "data.image_size")
    if size <= 0 or size % factor:
        raise ConfigError(
            "config.data.image_size",
            f"{size} cannot be halved evenly by {config.model.name!r}, which halves the "
            f"image to 1/{factor}",
            f"positive multiples of {factor} (e.g. {_multiples_near(size, factor)})")


def validate_config(config, training: bool = True) -> None:
    """Raise ConfigError naming the bad field; cheap (no compilation, no data reading, no
    objective: the family's `validate` and `downsample_factor` build at most a Flax module).

    The data checks and the networks raise ConfigError themselves (field, problem, allowed
    values), so every config mistake reads the same."""
    check_enumerated(config)
    _check_counts(config)  # before the family's: its checks may compare with the counts
    family = registry.family_module(config.model)
    family.validate(config)
    _check_hints(config)
    parallel.check_batch_divisible(config.batch_size, "config.batch_size")
    parallel.check_batch_divisible(config.eval.batch_size, "config.eval.batch_size")
    _check_image_size(config, family.downsample_factor(config))
    del training  # the train data is checked for eval runs too: its config must be valid
    data.validate_data_config(config.data, split=config.eval.split)
