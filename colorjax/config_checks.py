"""Config validation that runs before anything is compiled: every error is one
`ConfigError` line, `config.<field>: <what is wrong>; allowed: <...>`.

The allowed values of each enumerated field are imported from the code that uses them,
so a new norm, loss or sampler is allowed here as soon as it exists there.
"""

from __future__ import annotations

import difflib
import re

from colorjax import config_fields, data, parallel
from colorjax.models.pretrained import NETS as LPIPS_NETS
from colorjax.models.blocks import NORMS
from colorjax.objectives import MODEL_FAMILIES, make_objective
from colorjax.objectives.base import LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES

_POSITIVE_INTS = ("batch_size", "log_every", "eval_every", "checkpoint_every",
                  "keep_checkpoints")
_MISSING = object()


class ConfigError(ValueError):
    """A wrong config field, as one line: `config.<field>: <what is wrong>; allowed: <...>`."""

    def __init__(self, field: str, problem: str, allowed=None):
        self.field = field
        if allowed is not None and not isinstance(allowed, str):  # values, or a dict's keys
            allowed = ", ".join(repr(a) for a in sorted(allowed, key=str))
        suffix = f"; allowed: {allowed}" if allowed else ""
        super().__init__(f"{field}: {problem}{suffix}" if field else f"{problem}{suffix}")

    @classmethod
    def from_message(cls, message: str) -> ConfigError:
        """Recast a ValueError of the form colorjax raises everywhere,
        `config.<field>=<value> <problem>` (or `config.<field> <problem>`), into one line."""
        text = " ".join(str(message).split())
        match = re.match(r"(config\.[\w.]+(?:\[\w*\])?)(?:=|:\s*|\s+)(.*)", text)
        if not match:
            return cls("", text)
        return cls(match.group(1), match.group(2))


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


# --- enumerated fields --------------------------------------------------------------------


def _get(config, path: str):
    """`config.<path>`, or _MISSING where a group or field is absent (checked elsewhere)."""
    return config_fields.get(config, path, _MISSING)


def _family_choices(config, family: str):
    """(field, allowed) pairs of the enumerated fields only `family` reads."""
    if family != "diffusion":  # the diffusion UNet's norm is fixed (GroupNorm)
        yield "model.norm", NORMS
    if family == "adversarial":
        from colorjax.models.discriminators import DISCRIMINATORS
        from colorjax.models.generators import GENERATORS
        from colorjax.objectives.adversarial import ADV_LOSSES
        yield "model.generator", GENERATORS
        yield "adversarial.loss", ADV_LOSSES
        yield "adversarial.discriminator", DISCRIMINATORS
        yield "adversarial.disc_norm", NORMS
        yield "disc_optimizer.name", OPTIMIZERS
        yield "disc_optimizer.schedule", SCHEDULES
    elif family == "vae":
        from colorjax.models.vae import CONDITIONS
        from colorjax.objectives.vae import SAMPLE_MODES
        yield "model.condition", CONDITIONS
        yield "vae.sample_mode", SAMPLE_MODES
    elif family == "diffusion":
        from colorjax.diffusion import PREDICTIONS, SAMPLERS
        from colorjax.diffusion import SCHEDULES as NOISE_SCHEDULES
        from colorjax.models.backbone import BACKBONES
        from colorjax.objectives.diffusion import LOSSES as DIFFUSION_LOSSES
        yield "diffusion.schedule", NOISE_SCHEDULES
        yield "diffusion.prediction", PREDICTIONS
        yield "diffusion.loss", DIFFUSION_LOSSES
        yield "model.backbone", BACKBONES
        if _get(config, "sampler.name"):  # unset or '': the model name picks the sampler
            yield "sampler.name", SAMPLERS


def check_choices(config) -> None:
    """Every enumerated field against the values the code that reads it accepts."""
    name = config.model.name
    if name not in MODEL_FAMILIES:
        raise ConfigError("config.model.name", f"{name!r} is not allowed", MODEL_FAMILIES)
    shared = [("loss", LOSSES), ("optimizer.name", OPTIMIZERS),
              ("optimizer.schedule", SCHEDULES), ("precision", PRECISIONS),
              ("eval.lpips_net", LPIPS_NETS)]
    for field, allowed in shared + list(_family_choices(config, MODEL_FAMILIES[name])):
        value = _get(config, field)
        if value is not _MISSING and value not in allowed:
            raise ConfigError(f"config.{field}", f"{value!r} is not allowed", allowed)


# --- everything else ----------------------------------------------------------------------


def _multiples_near(size: int, factor: int) -> str:
    """The multiples of `factor` on either side of `size`: what the user probably meant."""
    below = size // factor * factor
    nearest = [m for m in (below, below + factor) if m > 0]
    return " or ".join(str(m) for m in nearest)


def _check_numbers(config) -> None:
    for field in _POSITIVE_INTS:
        if int(config[field]) <= 0:
            raise ConfigError(f"config.{field}", f"{config[field]} is not allowed",
                              "positive integers")
    if config.num_epochs <= 0 and config.num_train_steps <= 0:
        raise ConfigError("config.num_train_steps", f"{config.num_train_steps} is not allowed",
                          "> 0 (or config.num_epochs > 0)")
    if config.optimizer.learning_rate <= 0:
        raise ConfigError("config.optimizer.learning_rate",
                          f"{config.optimizer.learning_rate} is not allowed", "> 0")
    if config.eval.num_images <= 0:
        raise ConfigError("config.eval.num_images", f"{config.eval.num_images} is not allowed",
                          "> 0")


def _check_image_size(config) -> None:
    """image_size must halve evenly as often as the network halves it."""
    size = int(config.data.image_size)
    factor = make_objective(config).downsample_factor
    if size <= 0 or size % factor:
        raise ConfigError(
            "config.data.image_size",
            f"{size} cannot be halved evenly by {config.model.name!r}, which halves the "
            f"image to 1/{factor}",
            f"positive multiples of {factor} (e.g. {_multiples_near(size, factor)})")


def validate_config(config, training: bool = True) -> None:
    """Raise ConfigError naming the bad field; cheap (no compilation, no data reading).

    Errors raised by the objectives and the data checks (ValueErrors that name their
    field) come out as ConfigError too, so every config mistake reads the same."""
    try:
        check_choices(config)
        _check_numbers(config)
        parallel.check_batch_divisible(config.batch_size, "config.batch_size")
        parallel.check_batch_divisible(config.eval.batch_size, "config.eval.batch_size")
        _check_image_size(config)
        del training  # the train data is checked for eval runs too: its config must be valid
        data.validate_data_config(config.data, split=config.eval.split)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError.from_message(str(e)) from e
