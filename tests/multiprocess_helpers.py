"""Helpers (no tests) for test_multiprocess.py: run the real CLI under launch/local_cpu.sh
with a hard timeout, and read back what a run left in its workdir."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from colorjax.platform import parallel
from colorjax.training import loop as train
from colorjax.presets import load_config
from colorjax.objectives import make_objective
from conftest import flags_of, restore_checkpoint, set_fields, xla_flags_for_tests  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "launch" / "local_cpu.sh"


def where_each_process_was(output: str, lines: int = 12) -> str:
    """The last `lines` lines of each process ([pN] prefixes) and of the launcher."""
    by_process: dict[str, list[str]] = {}
    for line in output.replace("\r", "\n").splitlines():
        m = re.match(r"\[(p\d+|launch)\] ?(.*)", line)
        key = m.group(1) if m else "other"
        if m and not m.group(2).strip():
            continue
        by_process.setdefault(key, []).append(m.group(2) if m else line)
    return "\n".join(f"--- {key}, last lines:\n" + "\n".join(text[-lines:])
                     for key, text in sorted(by_process.items()))


def _env(data_dir, devices_per_process: int, single: bool):
    env = dict(os.environ, COLORJAX_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(k, None)
    if single:  # one process with as many devices as the multi-process run has in all
        env["XLA_FLAGS"] = xla_flags_for_tests(devices_per_process)
    else:  # the launcher adds each process's device count to the other flags
        env["XLA_FLAGS"] = xla_flags_for_tests(None)
        env["DEVICES_PER_PROCESS"] = str(devices_per_process)
    return env


def start(args, *, processes: int, data_dir, devices_per_process: int = 1, launcher=True,
          env=None):
    """Popen of `python -m colorjax.main ARGS` under the launcher (or alone), in its own
    session so that everything it started can be killed together; `env`: more variables."""
    cmd = [sys.executable, "-m", "colorjax.main", *args]
    if launcher:
        cmd = ["bash", str(LAUNCHER), str(processes), *cmd]
    return subprocess.Popen(
        cmd, cwd=REPO, env={**_env(data_dir, devices_per_process, not launcher), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_all(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(proc, timeout: float, what: str, check: bool = True) -> str:
    """Wait for `proc` at most `timeout` s; on timeout kill it all and fail, saying where
    each process was. Returns the combined output."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all(proc)
        out, _ = proc.communicate()
        pytest.fail(f"{what}: no end after {timeout:.0f} s (killed).\n"
                    + where_each_process_was(out))
    if check and proc.returncode != 0:
        pytest.fail(f"{what}: exit status {proc.returncode}.\n" + where_each_process_was(out))
    return out


def run(args, *, processes: int, data_dir, timeout: float = 300, devices_per_process=1,
        launcher=True, check=True, env=None) -> str:
    proc = start(args, processes=processes, data_dir=data_dir,
                 devices_per_process=devices_per_process, launcher=launcher, env=env)
    what = f"{processes} process(es): colorjax.main {' '.join(args)}"
    return finish(proc, timeout, what, check)


def process_lines(output: str, index: int) -> list[str]:
    return [line[len(f"[p{index}] "):] for line in output.splitlines()
            if line.startswith(f"[p{index}] ")]


def config_of(model: str, overrides: dict):
    """The config the CLI builds from `configs/<model>.py:cpu` and `overrides`."""
    return set_fields(load_config(model, "cpu"), overrides)


def checkpoint_state(workdir, config, step: int | None = None):
    """(step, train state as host numpy leaves by path, data state) of a checkpoint,
    restored in this process."""
    mesh = parallel.create_mesh()
    objective = make_objective(config)
    target = train.create_state(config, objective, mesh, int(config.num_train_steps))
    step, state, data_state = restore_checkpoint(workdir, target, step)
    def host(v):
        if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            v = jax.random.key_data(v)
        return np.asarray(jax.device_get(v))

    leaves = {jax.tree_util.keystr(k): host(v)
              for k, v in jax.tree_util.tree_leaves_with_path(state)}
    return step, leaves, data_state


def assert_states_close(a: dict, b: dict, rtol=1e-5, atol=1e-6) -> None:
    assert a.keys() == b.keys()
    bad = [k for k in a if not np.allclose(a[k], b[k], rtol=rtol, atol=atol)]
    worst = {k: float(np.max(np.abs(a[k] - b[k]))) for k in bad[:5]}
    assert not bad, f"{len(bad)} of {len(a)} leaves differ, e.g. (max abs diff) {worst}"
