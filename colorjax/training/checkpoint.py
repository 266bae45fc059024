"""Training checkpoints (orbax): train state, data-iterator state and config, together.

`restore_run` is the one way to restore a run (eval, export, analysis scripts): the
config saved with a checkpoint, its objective, and its train state, restored onto abstract
shapes (no initialization runs, nothing is compiled).

Each step directory holds `colorjax_sha256.json`, the digests of its files, written by
process 0 as the last part of the step's save: in orbax's finalization callback, before
the temporary directory is renamed into place, so a step never appears without them (a
SIGKILL between saves leaves the newest step verifiable). A resume checks them and falls
back to the newest checkpoint that verifies and restores, moving damaged ones aside.

Frozen pretrained weights (`config.model.backbone`) are not saved: they are the installed
package's, and a restore takes them from the target state (training) or loads them again
(`restore_run`). Checkpoints written with them, by earlier versions, still restore as they
are (the next save leaves them out).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp

from colorjax.platform import integrity
from colorjax.platform import parallel
from colorjax.training import run_config
from colorjax.inference.artifact import tree_mismatch
from colorjax.objectives import make_objective
from colorjax.objectives.base import example_batch
from colorjax.objectives.frozen_backbone import (holds_frozen, load_frozen_like, with_frozen,
                                                 without_frozen)

DIGESTS = "colorjax_sha256.json"
# orbax's commit records, written when a step is renamed into place, after the digests:
# the success marker, and the commit time in the step metadata. Not covered (neither holds
# anything a restore reads).
COMMIT_RECORDS = ("_CHECKPOINT_METADATA", "commit_success.txt")
# The custom step metadata that says a step was saved with its digests: a step that says
# so and has none is damaged, not a checkpoint from before digests.
SEALED = "colorjax_sha256"


class DamagedCheckpointError(RuntimeError):
    """No checkpoint of a workdir verifies and restores (the damaged ones were moved aside)."""


class CheckpointMismatchError(run_config.RunConfigError):
    """A checkpoint's saved state is not the state of the model the config describes (a
    RunConfigError: `--mode=eval` and `--mode=export` report it in one line)."""


class TrainCheckpointer:
    """Saves asynchronously every call; keeps the last `max_to_keep`.

    A step directory appears only once orbax has finished writing it (atomic rename), so a
    run killed mid-save resumes from the previous complete checkpoint.
    """

    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._async = async_save
        # The digests are written when orbax finalizes an async save (on its primary host,
        # process 0, after every process's files are complete, before the rename).
        async_options = (ocp.AsyncOptions(post_finalization_callback=self._seal_finalized)
                         if async_save else None)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True,
            async_options=async_options)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._unsealed: list[int] = []  # saved steps whose digests are not written yet

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def resolve_step(self, requested: int) -> int:
        """The step `config.eval.step` names (-1 = the latest); FileNotFoundError if absent."""
        step = self.latest_step() if requested < 0 else int(requested)
        if step is None or step not in self.all_steps():
            raise FileNotFoundError(
                f"no checkpoint {'at all' if step is None else f'for step {step}'} in "
                f"{self.directory} (config.eval.step={requested}; available: "
                f"{self.all_steps()}); train first")
        return step

    def save(self, step: int, state, data_state, config) -> None:
        # orbax waits for the previous async save before starting this one anyway; waiting
        # here first keeps one step in `_unsealed` for the finalization callback.
        self.wait()
        self._unsealed.append(step)
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(without_frozen(state)),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        ), force=True, custom_metadata={SEALED: DIGESTS})
        if not self._async:  # written and renamed already: seal it now
            self.wait()

    def restore(self, step: int, target_state, frozen_source=None):
        """Restore onto `target_state`'s structure, shapes, dtypes and shardings. The
        frozen weights, which a checkpoint does not hold, come from `frozen_source` (default
        `target_state`, which must then hold arrays there)."""
        from_checkpoint = saved_with_frozen(self.step_dir(step))  # an older checkpoint
        target = target_state if from_checkpoint else without_frozen(target_state)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data=ocp.args.JsonRestore(),
        ))
        state = restored["state"]
        if not from_checkpoint:
            state = with_frozen(state, target_state if frozen_source is None else frozen_source)
        return state, restored["data"]

    def saved_config(self, step: int) -> ml_collections.ConfigDict:
        """The config the run saved beside its state at `step` (e.g. for analysis scripts)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))
        return ml_collections.ConfigDict(restored["config"])

    def _seal_finalized(self) -> None:
        """orbax's post-finalization callback: the step being saved is complete in its
        temporary directory (`<step>.orbax-checkpoint-tmp`; in place where the storage
        commits without a rename), which is renamed into place after this returns."""
        for step in self._unsealed:
            tmp = os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp")
            target = tmp if os.path.isdir(tmp) else self.step_dir(step)
            if os.path.isdir(target):  # else `wait` seals it, or it is gone
                _seal(target)

    def wait(self) -> None:
        """Wait for pending saves; record the digests of any step they wrote that has none
        yet (a synchronous save, or a storage layout the callback did not find)."""
        self._manager.wait_until_finished()
        steps, self._unsealed = self._unsealed, []
        if jax.process_index() != 0:
            return
        for step in steps:
            step_dir = self.step_dir(step)
            # Not already removed by max_to_keep, nor sealed by the callback.
            if os.path.isdir(step_dir) and not os.path.isfile(os.path.join(step_dir, DIGESTS)):
                _seal(step_dir)

    def close(self) -> None:
        """Wait for pending saves and release the manager; a second call does nothing."""
        if self._manager is None:
            return
        self.wait()
        self._manager.close()
        self._manager = None

    # --- integrity ---------------------------------------------------------------------

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def problem(self, step: int) -> str | None:
        """What is wrong with checkpoint `step` by its recorded digests; None when it
        verifies, or when it has none and was saved without them (an older colorjax: then
        only a restore can tell)."""
        path = os.path.join(self.step_dir(step), DIGESTS)
        if not os.path.isfile(path):
            if _says_sealed(self.step_dir(step)):
                return f"{DIGESTS} is missing (it was saved with its digests)"
            return None
        try:
            with open(path) as f:
                recorded = json.load(f)
        except (OSError, ValueError):
            return f"{DIGESTS} cannot be read"
        return integrity.first_problem(self.step_dir(step), recorded)

    def check_step(self, step: int, action: str) -> None:
        """Raise DamagedCheckpointError naming the damage, and the steps to `action`
        instead, when checkpoint `step` does not verify."""
        problem = self.problem(step)
        if problem:
            raise DamagedCheckpointError(
                f"checkpoint step {step} in {self.directory} is damaged: {problem}; {action} "
                f"another step (--config.eval.step=N; available: {self.all_steps()})")

    def newest_verified_step(self) -> int | None:
        """The newest step whose recorded digests all match (after pending saves)."""
        self.wait()
        for step in sorted(self.all_steps(), reverse=True):
            if os.path.isfile(os.path.join(self.step_dir(step), DIGESTS)) \
                    and self.problem(step) is None:
                return step
        return None

    def restore_newest_good(self, target_state, report=print):
        """(step, state, data state) of the newest checkpoint that verifies and restores;
        (None, target_state, None) when there is none at all. Damaged ones are moved to
        `<directory>.damaged/` (never deleted), each reported in one line through `report`.
        Raises DamagedCheckpointError when checkpoints exist but none is usable."""
        steps = sorted(self.all_steps(), reverse=True)
        damaged = []
        for step in steps:
            problem = self.problem(step)
            if problem is None:
                try:
                    state, data_state = self.restore(step, target_state)
                except Exception as e:  # noqa: BLE001  orbax/TensorStore: unreadable files
                    problem = f"it cannot be restored ({integrity.error_line(e)})"
                else:
                    self._set_aside(damaged, report, f"resuming from step {step}, the newest "
                                                     "checkpoint that verifies")
                    return step, state, data_state
            damaged.append((step, problem))
        if not damaged:
            return None, target_state, None
        self._set_aside(damaged, report, "no checkpoint is left to resume from")
        raise DamagedCheckpointError(
            f"every checkpoint in {self.directory} is damaged ({len(damaged)}; moved to "
            f"{self.directory}.damaged). Rerun to start from step 0, or restore a backup.")

    def _set_aside(self, damaged, report, outcome: str) -> None:
        if not damaged:
            return
        aside = self.directory + ".damaged"
        for step, problem in damaged:
            target = os.path.join(aside, str(step))
            if jax.process_index() == 0:
                os.makedirs(aside, exist_ok=True)
                n = 1
                while os.path.exists(target):
                    n += 1
                    target = os.path.join(aside, f"{step}.{n}")
                shutil.move(self.step_dir(step), target)
                report(f"checkpoint step {step} is damaged: {problem}; moved it to {target}; "
                       f"{outcome}")
        parallel.barrier("colorjax: damaged checkpoints moved aside")
        self._manager.reload()


def _seal(step_dir: str) -> None:
    """Write `DIGESTS` into `step_dir`: the digests of its files but orbax's commit records."""
    digests = integrity.digest_tree(step_dir, exclude=(DIGESTS, DIGESTS + ".tmp",
                                                       *COMMIT_RECORDS))
    tmp = os.path.join(step_dir, DIGESTS + ".tmp")
    with open(tmp, "w") as f:
        json.dump(digests, f, indent=0, sort_keys=True)
    os.replace(tmp, os.path.join(step_dir, DIGESTS))


def _says_sealed(step_dir: str) -> bool:
    """Whether orbax's step metadata says the step was saved with `DIGESTS` (False when it
    cannot be read: then a restore tells)."""
    try:
        with open(os.path.join(step_dir, "_CHECKPOINT_METADATA")) as f:
            custom = json.load(f).get("custom_metadata")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(custom, dict) and custom.get(SEALED) == DIGESTS


# --- restoring a run ---------------------------------------------------------------------


class RestoredRun(NamedTuple):
    """What `restore_run` gives: the run's config, its objective, the restored train state
    and the checkpoint step it came from."""
    config: ml_collections.ConfigDict
    objective: Any
    state: Any
    step: int


def abstract_train_state(objective, image_size: int, num_train_steps: int, sharding):
    """Shapes, dtypes and `sharding` for every leaf of `objective.init`'s state (its
    optimizer spanning `num_train_steps`), by `jax.eval_shape`: nothing runs."""
    batch = example_batch(image_size)
    shapes = jax.eval_shape(lambda rng: objective.init(rng, batch, num_train_steps),
                            jax.random.key(0))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)


def _saved_tree(step_dir: str):
    """The tree metadata (paths, shapes, dtypes) of the state saved in `step_dir`; None
    for an unexpected layout."""
    state_dir = os.path.join(step_dir, "state")
    if not os.path.isdir(state_dir):
        return None
    # The handler reads the item's tree metadata (the Checkpointer would also look for
    # step-level metadata, which a CheckpointManager item does not have, and warn).
    saved = ocp.StandardCheckpointHandler().metadata(pathlib.Path(state_dir))
    return saved.tree if hasattr(saved, "tree") else saved


def _tree_with_frozen(tree) -> bool:
    return isinstance(tree, dict) and holds_frozen(tree.get("model_state"))


def saved_with_frozen(step_dir: str) -> bool:
    """Whether the checkpoint in `step_dir` holds frozen backbone weights (written before
    they were left out)."""
    return _tree_with_frozen(_saved_tree(step_dir))


def check_matches(step_dir: str, target) -> None:
    """CheckpointMismatchError, clearer than orbax's long one, when the state saved in
    `step_dir` does not have `target`'s paths, shapes and dtypes (a --config that is not
    the training config). Frozen weights are compared only where the checkpoint has them."""
    saved = _saved_tree(step_dir)
    if saved is None:
        return  # an unexpected layout: let the restore report it
    if not _tree_with_frozen(saved):
        target = without_frozen(target)
    mismatch = tree_mismatch(saved, target, "the checkpoint", "--config's model")
    if mismatch:
        raise CheckpointMismatchError(
            f"the checkpoint {step_dir} does not match the model --config describes: "
            f"{mismatch}. Pass the --config file and overrides used for training (they are "
            f"saved in {os.path.join(step_dir, 'config')}).")


def _unrestorable(ckpt: TrainCheckpointer, step: int, action: str,
                  error: Exception) -> DamagedCheckpointError:
    return DamagedCheckpointError(
        f"checkpoint step {step} in {ckpt.directory} cannot be restored "
        f"({integrity.error_line(error)}); {action} another step (--config.eval.step=N; "
        f"available: {ckpt.all_steps()})")


def restore_run(workdir: str, step: int = -1, *, config=None,
                overridden: list[str] | None = None, sharding=None,
                prepare_config: Callable | None = None, action: str = "restore") -> RestoredRun:
    """The run in `workdir` at checkpoint `step` (-1 = the latest), restored.

    The config is the one saved with that checkpoint; with `config` and `overridden` (the
    `--config.<field>` flags given), the saved one with those runtime fields applied
    (`run_config.merge`, RunConfigError for a model-changing flag); with `config` alone,
    `config` as it is. `prepare_config(config)`, if given, is called before anything is
    built: it may check the config (eval validates it) or edit it (the analysis scripts).
    The step's digests are checked (DamagedCheckpointError naming the steps to `action`
    instead), the state is checked against the config's model (CheckpointMismatchError)
    and restored onto `sharding` (default: the first device; a mesh's replicated sharding
    in a multi-device run). FileNotFoundError when there is no such checkpoint.

    No initialization runs and nothing is compiled: the target is `jax.eval_shape` of
    `objective.init`. The restored state's optimizer (`state.tx`) spans
    `config.num_train_steps` (at least 1) steps: eval and export do not use it, and the
    length of an epoch-based run would need the data pipeline to count the train split.
    """
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in {os.path.abspath(workdir)} "
                                f"({directory} is absent); train first")
    ckpt = TrainCheckpointer(directory, async_save=False)
    try:
        step = ckpt.resolve_step(step)
        if config is None:
            config = ckpt.saved_config(step)
        elif overridden is not None:
            config = run_config.merge(ckpt.saved_config(step), config, overridden)
        if prepare_config is not None:
            prepare_config(config)
        ckpt.check_step(step, action)
        objective = make_objective(config)
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = abstract_train_state(objective, int(config.data.image_size),
                                      max(1, int(config.num_train_steps)), sharding)
        try:
            check_matches(ckpt.step_dir(step), target)
        except CheckpointMismatchError:
            raise
        except Exception as e:  # noqa: BLE001  unreadable metadata (a step without digests)
            raise _unrestorable(ckpt, step, action, e) from e
        frozen = load_frozen_like(target, objective, sharding)
        try:
            state, _ = ckpt.restore(step, target, frozen_source=frozen)
        except Exception as e:  # noqa: BLE001  orbax/TensorStore: damage digests did not see
            raise _unrestorable(ckpt, step, action, e) from e
    finally:
        ckpt.close()
    return RestoredRun(config, objective, state, step)
