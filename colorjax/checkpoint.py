"""Training checkpoints (orbax): train state, data-iterator state and config, together."""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp


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
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
