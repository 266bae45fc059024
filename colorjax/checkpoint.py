"""Training checkpoints (orbax): train state, data-iterator state and config, together.

Each finished step directory gets `colorjax_sha256.json`, the digests of its files
(written by process 0 once orbax has committed the step). A resume checks them and falls
back to the newest checkpoint that verifies and restores, moving damaged ones aside.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import ml_collections
import orbax.checkpoint as ocp

from colorjax import integrity, parallel

DIGESTS = "colorjax_sha256.json"


class DamagedCheckpointError(RuntimeError):
    """No checkpoint of a workdir verifies and restores (the damaged ones were moved aside)."""


class TrainCheckpointer:
    """Saves asynchronously every call; keeps the last `max_to_keep`.

    A step directory appears only once orbax has finished writing it (atomic rename), so a
    run killed mid-save resumes from the previous complete checkpoint.
    """

    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
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
        # here first lets the previous step's digests be written now.
        self.wait()
        self._unsealed.append(step)
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        ), force=True)

    def restore(self, step: int, target_state):
        """Restore onto `target_state`'s structure, shapes, dtypes and shardings."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data=ocp.args.JsonRestore(),
        ))
        return restored["state"], restored["data"]

    def saved_config(self, step: int) -> ml_collections.ConfigDict:
        """The config the run saved beside its state at `step` (e.g. for analysis scripts)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))
        return ml_collections.ConfigDict(restored["config"])

    def wait(self) -> None:
        """Wait for pending saves, then record the digests of the steps they wrote."""
        self._manager.wait_until_finished()
        steps, self._unsealed = self._unsealed, []
        if jax.process_index() != 0:
            return
        for step in steps:
            step_dir = self.step_dir(step)
            if os.path.isdir(step_dir):  # not already removed by max_to_keep
                digests = integrity.digest_tree(step_dir, exclude=(DIGESTS,))
                tmp = os.path.join(step_dir, DIGESTS + ".tmp")
                with open(tmp, "w") as f:
                    json.dump(digests, f, indent=0, sort_keys=True)
                os.replace(tmp, os.path.join(step_dir, DIGESTS))

    def close(self) -> None:
        self.wait()
        self._manager.close()

    # --- integrity ---------------------------------------------------------------------

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def problem(self, step: int) -> str | None:
        """What is wrong with checkpoint `step` by its recorded digests; None when it
        verifies, or when it has none (older colorjax, or killed before they were written:
        then only a restore can tell)."""
        path = os.path.join(self.step_dir(step), DIGESTS)
        if not os.path.isfile(path):
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
                    first = (str(e).strip().splitlines() or [""])[0][:200]
                    problem = f"it cannot be restored ({type(e).__name__}: {first})"
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
