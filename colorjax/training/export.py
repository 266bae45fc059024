"""Writing inference exports: only what prediction needs, from a training workdir.

The format (``variables/``, ``config.json``, ``metadata.json`` and its digest) and reading
and verifying an export are `colorjax.inference.artifact`'s. ``metadata.json`` and its digest are
written last into a temporary directory that is then renamed, so a directory is either a
complete export or not one.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import shutil
import tempfile

import jax
import orbax.checkpoint as ocp

from colorjax.platform import integrity
from colorjax.training import run_config
from colorjax.inference.artifact import (CONFIG, FORMAT, FORMAT_VERSION, METADATA, VARIABLES,
                                         ExportError, _check_objective, _leaves_text,
                                         nonfinite_leaves)
from colorjax.training.checkpoint import DamagedCheckpointError, restore_run
from colorjax.objectives import make_objective
from colorjax.version import __version__


def latest_metrics(workdir: str) -> dict | None:
    """The newest metrics table in `workdir/eval/*.json` (highest step), or None."""
    def step_of(path):
        m = re.search(r"_step_(\d+)\.json$", path)
        return (int(m.group(1)) if m else -1, os.path.getmtime(path))

    paths = sorted(glob.glob(os.path.join(workdir, "eval", "*.json")), key=step_of)
    for path in reversed(paths):
        try:
            with open(path) as f:
                return {"file": os.path.relpath(path, workdir), "table": json.load(f)}
        except (OSError, ValueError):
            continue  # a half-written or foreign file: try the previous table
    return None


def write_export(export_dir: str, variables, config, *, step: int,
                 metrics: dict | None = None, source: str = "",
                 extra: dict | None = None) -> str:
    """Write an export of `variables` (= `objective.inference_variables(state)`).

    Replaces an older export at `export_dir`; refuses to overwrite anything else. `extra`:
    more metadata fields (a converted checkpoint's provenance, `colorjax.convert`).
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir) \
            and not os.path.isfile(os.path.join(export_dir, METADATA)):
        raise ExportError(f"{export_dir} exists and is not a colorjax export; "
                          "choose an empty or new --export_dir")
    if bad := nonfinite_leaves(variables):  # a diverged model: never presented as usable
        where = f" of {source}" if source else ""
        raise ExportError(
            f"not exported: the weights of step {step}{where} are not finite "
            f"({_leaves_text(bad)} hold NaN/Inf): the model diverged in training and would "
            "colorize every photo black. Export an earlier checkpoint "
            "(--config.eval.step=<step>)")
    name = config.model.name
    objective = make_objective(config)
    _check_objective(objective, name)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": name, "family": objective.family, "step": int(step),
        "image_size": int(config.data.image_size),
        "downsample_factor": int(objective.downsample_factor),
        "samples": bool(objective.samples),
        "hints": bool(objective.hints),  # config.model.hints
        # A family outside colorjax: the module that loads it again (config.model.objective).
        **({"objective": config.model.objective} if config.model.get("objective") else {}),
        "colorjax_version": __version__, "jax_version": jax.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source, "metrics": metrics, **(extra or {}),
    }
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        ckptr = ocp.Checkpointer(ocp.StandardCheckpointHandler())
        ckptr.save(os.path.join(tmp, VARIABLES), args=ocp.args.StandardSave(variables))
        ckptr.close()
        with open(os.path.join(tmp, CONFIG), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        # Digests of everything but the metadata itself, checked by every load.
        metadata["sha256"] = integrity.digest_tree(tmp)
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(metadata, f, indent=2)
        # ... and the metadata's own digest beside it: a damaged field (the image size, the
        # table's key) is then an error too (`artifact.read_metadata`).
        integrity.write_sidecar(os.path.join(tmp, METADATA))
        if os.path.exists(export_dir):
            old = export_dir + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(export_dir, old)
            os.rename(tmp, export_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def export_checkpoint(config, workdir: str, export_dir: str | None = None,
                      overridden: list[str] | None = None) -> str:
    """`--mode=export`: the workdir's checkpoint `config.eval.step` (-1 = latest) as an export.

    With `overridden` (the `--config.<field>` flags given), the config is the one saved in
    the checkpoint with those runtime fields applied (`run_config.merge`); with None,
    `config` is used as it is. Restores the train state with `checkpoint.restore_run` (onto
    abstract shapes: no initialization is run; digests and tree checked first), keeps
    `inference_variables(state)`, writes it with the config and metadata. Returns the path.
    """
    try:
        run = restore_run(workdir, config.eval.step, config=config, overridden=overridden,
                          action="export")
    except (run_config.RunConfigError, DamagedCheckpointError) as e:  # incl. a mismatch
        raise ExportError(str(e)) from None
    config, objective, state, step = run
    _check_objective(objective, config.model.name)
    variables = objective.inference_variables(state)
    export_dir = export_dir or os.path.join(workdir, "export", f"step_{step}")
    return write_export(export_dir, variables, config, step=step,
                        metrics=latest_metrics(workdir), source=os.path.abspath(workdir))
