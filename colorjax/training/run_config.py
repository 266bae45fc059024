"""The config of an existing run, for `--mode=eval` and `--mode=export`.

A checkpoint holds the config it was trained with. Evaluating or exporting starts from it,
so no training flag has to be repeated; the command line may change only what does not
change the trained model (the eval split and data, the sampler, batch sizes, ...). A
model-changing flag that differs from the run's value is an error naming each field.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections

from colorjax.config import fields as config_fields
from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.objectives import objective_class

# Fields (and sections) a command line may set for any existing run: none of them changes
# the parameters or what the trained network computes. A family adds its own
# (`Objective.runtime_fields`: the sampler, the VAE's sample mode, the temperature).
RUNTIME_FIELDS = (
    "eval", "data", "batch_size", "seed", "wandb", "precision",
    "num_train_steps", "num_epochs", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints",
    "init_from",  # where the weights started: the checkpoint holds them now
)


class RunConfigError(ValueError):
    """The command line asks for a different model than the run trained."""


def is_runtime(field: str, config) -> bool:
    """Whether a command line may set `field` for a trained run of `config`'s model."""
    fields = RUNTIME_FIELDS + objective_class(config).runtime_fields
    return any(field == f or field.startswith(f + ".") for f in fields)


def _same_network(a: str, b: str) -> bool:
    """Two model names of one network trained one way, told apart only by their default
    sampler (configs/unetddim.py evaluates a unetddpm run)."""
    try:
        sa, sb = registry.spec(a), registry.spec(b)
    except ConfigError:
        return False
    return dataclasses.replace(sa, sampler=None) == dataclasses.replace(sb, sampler=None)


def _plain(value):
    """JSON form, so that a tuple on the command line equals the list a checkpoint saved."""
    return json.loads(json.dumps(value, default=str))


def _fill_missing(saved: dict, current: dict) -> None:
    """Fields the run's colorjax did not have yet take today's defaults."""
    for key, value in current.items():
        if key not in saved:
            saved[key] = value
        elif isinstance(value, dict) and isinstance(saved[key], dict):
            _fill_missing(saved[key], value)


def merge(saved: ml_collections.ConfigDict, cli: ml_collections.ConfigDict,
          overridden: list[str]) -> ml_collections.ConfigDict:
    """The run's config, with the command line's runtime fields applied.

    `cli` is the config `--config` built (file plus overrides); `overridden` the fields
    given as `--config.<field>`. Raises RunConfigError naming every model-changing field
    whose command-line value differs from the run's.
    """
    run = _plain(saved.to_dict())
    current = _plain(json.loads(cli.to_json_best_effort()))
    _fill_missing(run, current)
    problems = []
    name, run_name = current["model"]["name"], run["model"]["name"]
    if name != run_name:
        if _same_network(name, run_name):
            run["model"]["name"] = name  # the same network, sampled the other way
            run["sampler"] = current["sampler"]
        else:
            problems.append(f"config.model.name: the run trained {run_name!r}, --config "
                            f"gives {name!r}")
    run_model = ml_collections.ConfigDict(run)
    for field in overridden:
        if field == "model.name":
            continue
        value = config_fields.get(current, field)
        if value is config_fields.MISSING:
            continue  # not a field: the config checks name it
        if is_runtime(field, run_model):
            config_fields.set_field(run, field, value)
            continue
        trained = config_fields.get(run, field, None)
        if trained != value:
            problems.append(f"config.{field}: the run trained with {trained!r}, the command "
                            f"line gives {value!r}")
    if problems:
        raise RunConfigError(
            "the command line changes the trained model; drop these flags (the run's own "
            "values are used without them): " + "; ".join(problems))
    return ml_collections.ConfigDict(run)


def saved_config(workdir: str, step: int = -1) -> ml_collections.ConfigDict:
    """The config saved with checkpoint `step` (-1 = the latest) of the run in `workdir`.
    FileNotFoundError, in one line, when the run has no such checkpoint."""
    from colorjax.training.checkpoint import TrainCheckpointer  # it imports this module

    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in {os.path.abspath(workdir)} ({directory} is "
                                "absent); train first")
    ckpt = TrainCheckpointer(directory, async_save=False)
    try:
        return ckpt.saved_config(ckpt.resolve_step(step))
    finally:
        ckpt.close()


def get_config(workdir: str) -> ml_collections.ConfigDict:
    """This file as a config file, `--config=<this file>:WORKDIR`: the run's own config.
    `python -m colorjax.main --mode=eval|export` uses it when no --config is given, so
    that `--config.<field>=value` overrides apply to the run's fields and types (its
    tuples, which the checkpoint's JSON holds as lists, tuples again: ml_collections
    overrides tuples, not lists)."""
    def tuples(value):
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    return ml_collections.ConfigDict(tuples(saved_config(workdir).to_dict()))
