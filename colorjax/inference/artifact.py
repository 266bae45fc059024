"""The inference export format, and reading and verifying an export.

An export directory holds

* ``variables/``     an orbax checkpoint of ``objective.inference_variables(state)`` (the EMA
                     parameters where there are some, BatchNorm statistics; no optimizer
                     state, no discriminator, no VAE encoder);
* ``config.json``    the model's config (``config.to_json_best_effort()``);
* ``metadata.json``  format marker, model name and family, training step, image size,
                     colorjax version, the latest metrics table of the workdir, and the
                     sha256 digests of the other files;
* ``metadata.json.sha256``  the digest of ``metadata.json`` itself (`sha256sum` format).

Format versions: 1 (colorjax before the metadata was covered) has no
``metadata.json.sha256`` and, before digests were recorded at all, no ``sha256`` table:
such exports still load, their table checked where there is one. From version 2 both are
required: an export without either is damaged, not old.

`colorjax.training.export` writes one from a training workdir. Reading (`read_export`) never
imports the training loop, the checkpoints or the data pipeline: the tree to restore into
comes from ``jax.eval_shape`` of the objective's ``init`` followed by
``inference_variables``, which allocates and compiles nothing.
"""

from __future__ import annotations

import glob
import json
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from colorjax.platform import integrity
from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.objectives import make_objective
from colorjax.objectives.base import PRECISIONS, example_batch

FORMAT = "colorjax-export"
FORMAT_VERSION = 2
# The first version whose metadata.json is covered by its own digest and must hold the
# sha256 table of the other files.
SEALED_VERSION = 2
VARIABLES, CONFIG, METADATA = "variables", "config.json", "metadata.json"
METADATA_DIGEST = METADATA + integrity.SIDECAR


class ExportError(ValueError):
    """A directory is not a usable colorjax export (with what to do about it)."""


def abstract_inference_variables(objective, image_size: int, sharding=None):
    """The tree `inference_variables` returns, as ShapeDtypeStructs: what a load restores into."""
    batch = example_batch(image_size)
    shapes = jax.eval_shape(
        lambda rng: objective.inference_variables(objective.init(rng, batch)),
        jax.random.key(0))
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)


def _check_objective(objective, name: str) -> None:
    missing = [m for m in ("inference_variables", "predict_with") if not hasattr(objective, m)]
    if missing:
        raise ExportError(f"model {name!r} ({type(objective).__name__}) has no {missing}: "
                          "it cannot be exported or used for inference yet")


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


def _damaged(path: str, problem: str) -> ExportError:
    return ExportError(
        f"{path} is a damaged export: {problem}. Export the run again "
        "(python -m colorjax.main --config=... --workdir=W --mode=export) or copy "
        "it again from its source")


def _stray_digest_table(metadata: dict) -> str | None:
    """The key of a value shaped like the sha256 table ({file: 64 hex digits}) other than
    'sha256': in a version-1 export, the table under a damaged key."""
    for key, value in metadata.items():
        if key != "sha256" and isinstance(value, dict) and value and all(
                isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
                for v in value.values()):
            return key
    return None


def read_metadata(path: str) -> dict:
    """`metadata.json` of an export, checked: its own digest, format, version, a model
    colorjax knows, and the digests of the other files."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise ExportError(f"no export directory at {path}")
    # Its own digest first, where there is one: every field below is then as written.
    sealed = os.path.lexists(os.path.join(path, METADATA_DIGEST))
    if sealed and os.path.isfile(os.path.join(path, METADATA)):
        problem = integrity.sidecar_problem(os.path.join(path, METADATA))
        if problem:
            raise _damaged(path, problem)
    try:
        with open(os.path.join(path, METADATA)) as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        raise _not_an_export(path) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _not_an_export(path)
    version = metadata.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ExportError(f"{path} is a colorjax export of format version {version!r}; this "
                          f"colorjax reads versions up to {FORMAT_VERSION}: upgrade colorjax")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(path, f"format_version {version!r} in {METADATA} is no version "
                             f"colorjax writes (1 to {FORMAT_VERSION})")
    if version >= SEALED_VERSION and not sealed:
        raise _damaged(path, f"{METADATA_DIGEST} is missing (format version {version} "
                             "records it)")
    name = metadata.get("model")
    module = metadata.get("objective", "")  # a family outside colorjax: its module
    try:
        registry.spec({"name": name, "objective": module})
    except ConfigError:
        known = (sorted(registry.declared(module)) if module else list(registry.names()))
        raise ExportError(f"{path} is an export of model {name!r}, which this colorjax does not "
                          f"know; known models: {known}") from None
    for f in (CONFIG, VARIABLES):
        if not os.path.exists(os.path.join(path, f)):
            raise ExportError(f"{path} is an incomplete export: {f} is missing")
    recorded = metadata.get("sha256")
    if recorded is None:  # version-1 exports from before digests were recorded have none
        stray = _stray_digest_table(metadata)
        if version >= SEALED_VERSION or stray:
            raise _damaged(path, f"the sha256 table is missing from {METADATA}" +
                           (f" (a table of digests sits under the key {stray!r})"
                            if stray else f" (format version {version} records it)"))
        return metadata
    problem = (integrity.first_problem(path, recorded) if isinstance(recorded, dict)
               else "its sha256 table is not a mapping")
    if not problem and version >= SEALED_VERSION and CONFIG not in recorded:
        problem = f"its sha256 table does not cover {CONFIG}"
    if problem:
        raise _damaged(path, problem)
    return metadata


def check_consistent(path: str, metadata: dict, config, objective) -> None:
    """ExportError when metadata.json's fields disagree with config.json (the model's name
    and family, the image size, whether it samples): in a version-1 export, whose
    metadata has no digest of its own, a damaged field shows here. (The model's name is
    checked by `read_export` before the objective is built.)"""
    size = metadata.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise _damaged(path, f"{METADATA}'s image_size {size!r} is not a positive integer")
    expected = {"image_size": config.get("data", {}).get("image_size"),
                "family": objective.family, "samples": bool(objective.samples)}
    for field, want in expected.items():
        if field in metadata and metadata[field] != want:
            raise _damaged(path, f"{METADATA}'s {field} {metadata[field]!r} differs from "
                                 f"what {CONFIG} and the model say ({want!r})")


def read_export(path: str, sharding=None, precision: str | None = None):
    """(config, metadata, objective, variables) of an export, restored onto `sharding`
    (default: the first device). Builds the objective but no optimizer state or train state.
    `precision` ("float32" | "bfloat16"): the dtype the network computes in, instead of
    the export's `config.precision` (the weights stay float32)."""
    metadata = read_metadata(path)
    path = os.path.abspath(os.path.expanduser(path))
    with open(os.path.join(path, CONFIG)) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not allowed; allowed: "
                             f"{', '.join(PRECISIONS)}")
        config.precision = precision
    if config.get("model", {}).get("name") != metadata["model"]:
        raise ExportError(f"{path}: config.json's model {config.get('model', {}).get('name')!r} "
                          f"differs from metadata.json's {metadata['model']!r}")
    objective = make_objective(config)
    _check_objective(objective, metadata["model"])
    check_consistent(path, metadata, config, objective)
    abstract = abstract_inference_variables(objective, int(metadata["image_size"]), sharding)
    ckptr = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    try:
        saved = ckptr.metadata(os.path.join(path, VARIABLES)).item_metadata
        mismatch = tree_mismatch(saved.tree if hasattr(saved, "tree") else saved, abstract)
        if mismatch:
            raise ExportError(f"{path}: the saved parameters do not match model "
                              f"{metadata['model']!r} as configured in {CONFIG}: {mismatch}")
        try:
            variables = ckptr.restore(os.path.join(path, VARIABLES),
                                      args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # noqa: BLE001  orbax/TensorStore: damage no digest covered
            raise ExportError(f"{path}: its parameters cannot be restored "
                              f"({integrity.error_line(e)}); export the run again") from e
    finally:
        ckptr.close()
    if bad := nonfinite_leaves(variables):
        raise ExportError(
            f"{path}: its weights are not finite ({_leaves_text(bad)} hold NaN/Inf): the "
            "model diverged in training and would colorize every photo black. Export an "
            "earlier checkpoint of its run (--mode=export --config.eval.step=<step>)")
    return config, metadata, objective, variables


def nonfinite_leaves(variables) -> list[str]:
    """Paths ('params/Conv_0/kernel') of the floating-point leaves of `variables` that hold
    a NaN or an Inf; [] when all are finite. One device fetch for the whole tree."""
    leaves = [(path, x) for path, x in jax.tree_util.tree_flatten_with_path(variables)[0]
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    # Host arrays and CPU devices' arrays are checked by NumPy in place: an eager jnp
    # isfinite/all per leaf dispatched two XLA programs each and compiled one per shape
    # (19 s for DeOldify's 977 leaves, 0.3 s this way). Arrays that live elsewhere are
    # reduced on their devices, and only a flag a leaf comes back.
    flags = jax.device_get([_all_finite(x) for _, x in leaves])
    return ["/".join(_key_name(k) for k in path)
            for (path, _), ok in zip(leaves, flags) if not ok]


def _all_finite(x):
    """Whether `x` holds no NaN/Inf: a NumPy bool for a NumPy array or a fully addressable
    array on CPU devices, a device scalar (fetched by the caller) otherwise."""
    if isinstance(x, jax.Array):
        if not (x.is_fully_addressable and
                all(d.platform == "cpu" for d in x.sharding.device_set)):
            return jnp.all(jnp.isfinite(x))
        x = x.addressable_shards[0].data if len(x.sharding.device_set) > 1 and \
            x.sharding.is_fully_replicated else x
    return np.isfinite(np.asarray(x)).all()


def _leaves_text(paths: list[str]) -> str:
    """'a, b, c and 4 more leaves' of a list of leaf paths."""
    more = f" and {len(paths) - 3} more leaves" if len(paths) > 3 else ""
    return ", ".join(paths[:3]) + more


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey / FlattenedIndexKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def tree_mismatch(saved, expected, saved_name="the export", expected_name="the model") -> str:
    """'' when both trees have the same paths, shapes and dtypes; else the first differences.
    Paths are compared by name, so a saved dict matches a dataclass with those fields.
    (Also what a training checkpoint is checked with before it is restored.)"""
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
