"""What every converter does alike: read a published file safely, say what it is, and write
the converted weights as an ordinary colorjax export (checked against the Flax network)."""

from __future__ import annotations

import hashlib
import os
from typing import Callable

import numpy as np

from colorjax.models.torch_weights import TorchWeightsError
from colorjax.models.torch_zip import load_torch


class ConversionError(ValueError):
    """The file cannot be converted; one line saying why and what to do."""


def read_torch_file(path: str, model: str, releases: dict,
                    describe: Callable[[str, str, str], str], say=print):
    """(the unpickled object, the file's sha256) of `path`, read without running pickled
    code; `describe(path, model, sha256)` is the line said about the file first.
    ConversionError for an unknown `model`, an unreadable file or one that is not PyTorch's."""
    if model not in releases:
        raise ConversionError(f"--from={model!r} is not allowed; allowed: {sorted(releases)}")
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConversionError(f"cannot read it: {e.strerror or e}") from None
    digest = hashlib.sha256(data).hexdigest()
    say(describe(path, model, digest))
    try:
        return load_torch(data), digest
    except TorchWeightsError as e:
        raise ConversionError(f"not a PyTorch file colorjax reads safely ({e})") from None


def flat_state_dict(obj, what: str, wrapper: str | None = None) -> dict[str, np.ndarray]:
    """The file's object as a flat {key: array} state_dict of `what` (its name in messages):
    `obj[wrapper]` where a training framework wraps it (basicsr's "params", fastai's
    "model"), a uniform 'module.' prefix (nn.DataParallel's) removed; ConversionError for
    anything else."""
    if wrapper and isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
        obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"it holds a {type(obj).__name__}, not {what}")
    bad = next((k for k, v in obj.items()
                if not isinstance(k, str) or not isinstance(v, np.ndarray)), None)
    if bad is not None:
        raise ConversionError(f"entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor: "
                              f"not {what}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def write_converted(model: str, variables, config, weights: str, output: str,
                    provenance: dict) -> str:
    """`variables`, converted from the file `weights` for `config`'s network, checked
    against the Flax network's tree and written as an export at `output` (replacing an
    export there; refusing anything else); its metadata's `converted_from` is the file's
    name with `provenance`. Returns the export's path."""
    import jax

    from colorjax.inference.artifact import abstract_inference_variables, tree_mismatch
    from colorjax.objectives import make_objective
    from colorjax.training.export import write_export

    objective = make_objective(config)
    expected = abstract_inference_variables(objective, int(config.data.image_size))
    problem = tree_mismatch(variables, expected, "the converted weights", f"colorjax's {model}")
    if problem:  # the converter's tables and the Flax network disagree: a bug, not the file
        raise AssertionError(problem)
    variables = jax.tree.map(jax.numpy.asarray, variables)
    return write_export(output, variables, config, step=0,
                        source=f"converted from {os.path.abspath(weights)}",
                        extra={"converted_from": {"file": os.path.basename(weights),
                                                  **provenance}})
