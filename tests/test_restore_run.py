"""checkpoint.restore_run, the one way to restore a run (eval, export, the benchmarks): the
config saved with the checkpoint, runtime overrides applied, the state as it was saved, and
a clear error for a config that describes another model."""

import jax
import jax.monitoring
import numpy as np
import pytest

from colorjax.training import run_config
from colorjax.training.checkpoint import CheckpointMismatchError, restore_run
from conftest import tiny_config
from test_export import TINY, tiny_workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_workdir(tmp_path_factory.getbasetemp() / "colorjax_export")


def _assert_same_tree(got, want):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves) > 0
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_restore_run_gives_the_saved_config_and_state(workdir):
    wd, config, _, state = workdir
    events, listening = [], [True]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: events.append(name) if listening else None)
    run = restore_run(str(wd))
    listening.clear()
    assert "/jax/core/compile/backend_compile_duration" not in events  # no init, no jit
    assert run.step == 2
    assert run.config.to_dict() == restore_run(str(wd), 2).config.to_dict()
    assert (run.config.model.name, tuple(run.config.model.features)) == ("unet", (8, 16))
    assert run.config.data.image_size == config.data.image_size
    assert run.config.ema_decay == 0.5
    assert type(run.objective) is type(workdir[2])
    assert int(run.state.step) == 2
    _assert_same_tree(run.state.params, state.params)
    _assert_same_tree(run.state.ema_params, state.ema_params)
    _assert_same_tree(run.state.model_state, state.model_state)
    _assert_same_tree(run.state.opt_state, state.opt_state)
    assert run.state.tx is not None  # a train state: the optimizer comes with it
    device = jax.devices()[0]
    assert all(leaf.sharding.device_set == {device} for leaf in jax.tree.leaves(run.state))


def test_restore_run_applies_the_given_runtime_overrides(workdir):
    wd, _, _, state = workdir
    cli = tiny_config("unet", **TINY)
    cli.batch_size, cli.seed = 3, 12345
    run = restore_run(str(wd), config=cli, overridden=["batch_size"])
    assert run.config.batch_size == 3  # given on the command line: applied
    assert run.config.seed != 12345  # not given: the run's own value
    _assert_same_tree(run.state.params, state.params)
    cli.ema_decay = 0.9
    with pytest.raises(run_config.RunConfigError, match="config.ema_decay"):
        restore_run(str(wd), config=cli, overridden=["ema_decay"])


def test_restore_run_with_another_model_is_a_clear_error(workdir, tmp_path):
    wd = workdir[0]
    other = tiny_config("unet", **TINY)
    other.model.features = (4, 8)  # not what was trained
    assert issubclass(CheckpointMismatchError, run_config.RunConfigError)  # one-line CLI error
    with pytest.raises(CheckpointMismatchError,
                       match="does not match the model --config describes: .*Pass the "
                             "--config file and overrides used for training"):
        restore_run(str(wd), config=other)
    with pytest.raises(FileNotFoundError, match=r"for step 5 .*available: \[2\]"):
        restore_run(str(wd), 5)
    with pytest.raises(FileNotFoundError, match="no checkpoints in .*train first"):
        restore_run(str(tmp_path / "empty"))
    assert not (tmp_path / "empty").exists()
