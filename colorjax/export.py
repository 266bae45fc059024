"""Inference exports: only what prediction needs, written from a training workdir.

An export directory holds

* ``variables/``     an orbax checkpoint of ``objective.inference_variables(state)`` (the EMA
                     parameters where there are some, BatchNorm statistics; no optimizer
                     state, no discriminator, no VAE encoder);
* ``config.json``    the model's config (``config.to_json_best_effort()``);
* ``metadata.json``  format marker, model name and family, training step, image size,
                     colorjax version, and the latest metrics table of the workdir.

``metadata.json`` is written last into a temporary directory that is then renamed, so a
directory is either a complete export or not one. Reading (`read_export`) never imports
the training loop: the tree to restore into comes from ``jax.eval_shape`` of the
objective's ``init`` followed by ``inference_variables``, which allocates and compiles
nothing.
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
import jax.numpy as jnp
import orbax.checkpoint as ocp

from colorjax import integrity

FORMAT = "colorjax-export"
FORMAT_VERSION = 1
VARIABLES, CONFIG, METADATA = "variables", "config.json", "metadata.json"
# Families whose prediction is a draw: several colorizations per photo make sense.
SAMPLING_FAMILIES = ("vae", "diffusion")


class ExportError(ValueError):
    """A directory is not a usable colorjax export (with what to do about it)."""


# --- writing --------------------------------------------------------------------------


def _abstract_train_state(objective, image_size: int, sharding, num_train_steps: int):
    """Shapes, dtypes and a sharding for every leaf of `objective.init`'s state."""
    batch = {"l": jnp.zeros((1, image_size, image_size, 1)),
             "ab": jnp.zeros((1, image_size, image_size, 2))}
    shapes = jax.eval_shape(lambda rng: objective.init(rng, batch, num_train_steps),
                            jax.random.key(0))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)


def abstract_inference_variables(objective, image_size: int, sharding=None):
    """The tree `inference_variables` returns, as ShapeDtypeStructs: what a load restores into."""
    batch = {"l": jnp.zeros((1, image_size, image_size, 1)),
             "ab": jnp.zeros((1, image_size, image_size, 2))}
    shapes = jax.eval_shape(
        lambda rng: objective.inference_variables(objective.init(rng, batch)),
        jax.random.key(0))
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)


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


def _check_objective(objective, name: str) -> None:
    missing = [m for m in ("inference_variables", "predict_with") if not hasattr(objective, m)]
    if missing:
        raise ExportError(f"model {name!r} ({type(objective).__name__}) has no {missing}: "
                          "it cannot be exported or used for inference yet")


def write_export(export_dir: str, variables, config, *, step: int,
                 metrics: dict | None = None, source: str = "") -> str:
    """Write an export of `variables` (= `objective.inference_variables(state)`).

    Replaces an older export at `export_dir`; refuses to overwrite anything else.
    """
    from colorjax import __version__
    from colorjax.objectives import MODEL_FAMILIES, make_objective

    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and os.listdir(export_dir) \
            and not os.path.isfile(os.path.join(export_dir, METADATA)):
        raise ExportError(f"{export_dir} exists and is not a colorjax export; "
                          "choose an empty or new --export_dir")
    name = config.model.name
    objective = make_objective(config)
    _check_objective(objective, name)
    family = MODEL_FAMILIES[name]
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": name, "family": family, "step": int(step),
        "image_size": int(config.data.image_size),
        "downsample_factor": int(objective.downsample_factor),
        "samples": family in SAMPLING_FAMILIES,
        "colorjax_version": __version__, "jax_version": jax.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source, "metrics": metrics,
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
    `config` is used as it is. Restores the train state onto abstract shapes (no
    initialization is run), verifies it, keeps `inference_variables(state)`, writes it with
    the config and metadata. Returns the path.
    """
    from colorjax import run_config
    from colorjax.checkpoint import DamagedCheckpointError, TrainCheckpointer
    from colorjax.objectives import make_objective

    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"no checkpoints in {os.path.abspath(workdir)} "
                                f"({os.path.join(workdir, 'checkpoints')} is absent); train first")
    ckpt = TrainCheckpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    try:
        step = ckpt.resolve_step(config.eval.step)
        if overridden is not None:
            try:
                config = run_config.merge(ckpt.saved_config(step), config, overridden)
            except run_config.RunConfigError as e:
                raise ExportError(str(e)) from None
        try:
            ckpt.check_step(step, "export")
        except DamagedCheckpointError as e:
            raise ExportError(str(e)) from None
        objective = make_objective(config)
        _check_objective(objective, config.model.name)
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = _abstract_train_state(objective, int(config.data.image_size), sharding,
                                       max(1, int(config.num_train_steps)))
        _check_checkpoint_matches(os.path.join(ckpt.directory, str(step)), target)
        state, _ = ckpt.restore(step, target)
    finally:
        ckpt.close()
    variables = objective.inference_variables(state)
    export_dir = export_dir or os.path.join(workdir, "export", f"step_{step}")
    return write_export(export_dir, variables, config, step=step,
                        metrics=latest_metrics(workdir), source=os.path.abspath(workdir))


def _check_checkpoint_matches(step_dir: str, target) -> None:
    """A clear error, before orbax's long one, when --config is not the training config."""
    state_dir = os.path.join(step_dir, "state")
    if not os.path.isdir(state_dir):
        return  # an unexpected layout: let the restore report it
    import pathlib
    # The handler reads the item's tree metadata (the Checkpointer would also look for
    # step-level metadata, which a CheckpointManager item does not have, and warn).
    saved = ocp.StandardCheckpointHandler().metadata(pathlib.Path(state_dir))
    mismatch = _tree_mismatch(saved.tree if hasattr(saved, "tree") else saved, target,
                              "the checkpoint", "--config's model")
    if mismatch:
        raise ExportError(
            f"the checkpoint {step_dir} does not match the model --config describes: "
            f"{mismatch}. Pass the --config file and overrides used for training (they are "
            f"saved in {os.path.join(step_dir, 'config')}).")


# --- reading --------------------------------------------------------------------------


def _not_an_export(path: str) -> ExportError:
    hint = ("create one with `python -m colorjax.main --config=... --workdir=W --mode=export`")
    exports = sorted(glob.glob(os.path.join(path, "export", "step_*", METADATA)),
                     key=lambda p: int(re.search(r"step_(\d+)", p).group(1)))
    if exports:
        hint = f"this looks like a workdir; its latest export is {os.path.dirname(exports[-1])}"
    elif os.path.isdir(os.path.join(path, "checkpoints")):
        hint = ("this looks like a training workdir; export it first with "
                f"`python -m colorjax.main --config=... --workdir={path} --mode=export`")
    return ExportError(f"{path} is not a colorjax export (no {METADATA} with format "
                       f"{FORMAT!r}); {hint}")


def read_metadata(path: str) -> dict:
    """`metadata.json` of an export, checked: format, version, and a model colorjax knows."""
    from colorjax.objectives import MODEL_FAMILIES

    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise ExportError(f"no export directory at {path}")
    try:
        with open(os.path.join(path, METADATA)) as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        raise _not_an_export(path) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _not_an_export(path)
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ExportError(f"{path} is a colorjax export of format version {version!r}; this "
                          f"colorjax reads versions up to {FORMAT_VERSION}: upgrade colorjax")
    name = metadata.get("model")
    if name not in MODEL_FAMILIES:
        raise ExportError(f"{path} is an export of model {name!r}, which this colorjax does not "
                          f"know; known models: {sorted(MODEL_FAMILIES)}")
    for f in (CONFIG, VARIABLES):
        if not os.path.exists(os.path.join(path, f)):
            raise ExportError(f"{path} is an incomplete export: {f} is missing")
    recorded = metadata.get("sha256")
    if recorded is not None:  # exports before digests were recorded have none
        problem = (integrity.first_problem(path, recorded) if isinstance(recorded, dict)
                   else "its sha256 table is not a mapping")
        if problem:
            raise ExportError(
                f"{path} is a damaged export: {problem}. Export the run again "
                "(python -m colorjax.main --config=... --workdir=W --mode=export) or copy "
                "it again from its source")
    return metadata


def read_export(path: str, sharding=None):
    """(config, metadata, objective, variables) of an export, restored onto `sharding`
    (default: the first device). Builds the objective but no optimizer state or train state."""
    import ml_collections

    from colorjax.objectives import make_objective

    metadata = read_metadata(path)
    path = os.path.abspath(os.path.expanduser(path))
    with open(os.path.join(path, CONFIG)) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.get("model", {}).get("name") != metadata["model"]:
        raise ExportError(f"{path}: config.json's model {config.get('model', {}).get('name')!r} "
                          f"differs from metadata.json's {metadata['model']!r}")
    objective = make_objective(config)
    _check_objective(objective, metadata["model"])
    abstract = abstract_inference_variables(objective, int(metadata["image_size"]), sharding)
    ckptr = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    try:
        saved = ckptr.metadata(os.path.join(path, VARIABLES)).item_metadata
        mismatch = _tree_mismatch(saved.tree if hasattr(saved, "tree") else saved, abstract)
        if mismatch:
            raise ExportError(f"{path}: the saved parameters do not match model "
                              f"{metadata['model']!r} as configured in {CONFIG}: {mismatch}")
        variables = ckptr.restore(os.path.join(path, VARIABLES),
                                  args=ocp.args.StandardRestore(abstract))
    finally:
        ckptr.close()
    return config, metadata, objective, variables


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey / FlattenedIndexKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _tree_mismatch(saved, expected, saved_name="the export", expected_name="the model") -> str:
    """'' when both trees have the same paths, shapes and dtypes; else the first differences.
    Paths are compared by name, so a saved dict matches a dataclass with those fields."""
    def table(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {"/".join(_key_name(k) for k in path): (tuple(v.shape), str(v.dtype))
                for path, v in leaves}

    a, b = table(saved), table(expected)
    problems = [f"{k} missing from {saved_name}" for k in sorted(b.keys() - a.keys())]
    problems += [f"{k} not in {expected_name}" for k in sorted(a.keys() - b.keys())]
    problems += [f"{k}: {saved_name} has {a[k][0]} {a[k][1]}, {expected_name} wants "
                 f"{b[k][0]} {b[k][1]}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more
