"""The real CLI (`python -m colorjax.main`) under `launch/local_cpu.sh`: two processes
joined by jax.distributed on 127.0.0.1 (gloo CPU collectives).

Every run has a hard timeout that kills all its processes and prints the last lines of
each. The data is one generated photo folder (train 24, val 7: an odd split), prepared on
first use by the first two-process run of the module.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import CONSTANT_RATE, TEST_OPT_LEVEL
from multiprocess_helpers import (
    LAUNCHER, REPO, _env, assert_states_close, checkpoint_state, config_of, finish, flags_of,
    kill_all, process_lines, run, start, where_each_process_was)
from test_data_fixtures import colorful

# Every test here runs the real CLI end to end (and most share one module-scoped run).
pytestmark = pytest.mark.slow

VAL_IMAGES = 7  # not a multiple of the process count
TINY = {
    "model.features": (8, 16), "data.image_size": 32, "batch_size": 4,
    "eval.batch_size": 4, "eval.num_examples": 0, "eval.num_images": 4,
    "log_every": 2, **CONSTANT_RATE,  # the stop tests' runs reuse process 0's compiled step
}
# Per family: what makes it tiny, and how long it trains.
MODELS = {
    "unet": {},
    "unetgan": {"adversarial.disc_features": 8},
    "unetvae": {"model.latent_dim": 8},
    # No attention: it is per image, nothing of it crosses processes (83 s -> 73 s alone).
    "unetddim": {"model.attention_levels": (), "sampler.steps": 2},
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of generated colour photos with train/ and val/ splits, and a fresh data
    dir that no process has prepared it in yet."""
    root = tmp_path_factory.mktemp("mp_photos")
    for split, count, offset in (("train", 24, 0), ("val", VAL_IMAGES, 100)):
        (root / "photos" / split).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(colorful(offset + i, 40, 48)).save(root / "photos" / split / f"{i}.png")
    return root / "photos", root / "tfds"


def overrides(model, photos, **more):
    return {**TINY, **MODELS[model], "data.folder": str(photos[0]), **more}


def cli_args(model, workdir, o, mode="train"):
    return [f"--config=configs/{model}.py:cpu", f"--workdir={workdir}", f"--mode={mode}",
            *flags_of(o)]


def table(workdir, step):
    return json.loads((workdir / "eval" / f"validation_step_{step}.json").read_text())


def records(workdir):
    return [json.loads(line) for line in open(workdir / "metrics.jsonl")]


UNET_STEPS = 40


@pytest.fixture(scope="module")
def unet_runs(photos, tmp_path_factory):
    """The unet run on two processes (the first use of the photo folder), and the same
    flags on one process with two devices."""
    root = tmp_path_factory.mktemp("mp_unet")
    o = overrides("unet", photos, num_train_steps=UNET_STEPS, checkpoint_every=5,
                  eval_every=20)
    two = run(cli_args("unet", root / "two", o), processes=2, data_dir=photos[1])
    one = run(cli_args("unet", root / "one", o), processes=1, data_dir=photos[1],
              devices_per_process=2, launcher=False)
    return root, o, two, one


def test_two_processes_prepare_the_folder_once(unet_runs, photos):
    _, _, out, _ = unet_runs
    p0, p1 = process_lines(out, 0), process_lines(out, 1)
    reports = [line for line in p0 if line.startswith("Dataset ")]
    assert len(reports) == 1, "\n".join(p0[:20])
    assert "prepared in" in reports[0], "\n".join(p0[:20])
    assert not any(line.startswith("Dataset ") or "Checking" in line for line in p1)
    prepared = json.loads(next(photos[1].glob("*/colorjax_prepare.json")).read_text())
    assert prepared["report"]["splits"] == {"train": 24, "validation": VAL_IMAGES}


def test_two_processes_train_like_one(unet_runs):
    root, o, two, one = unet_runs
    config = config_of("unet", o)
    step2, state2, data2 = checkpoint_state(root / "two", config)
    step1, state1, data1 = checkpoint_state(root / "one", config)
    assert step2 == step1 == UNET_STEPS
    assert data2["next_batch"] == data1["next_batch"]
    assert_states_close(state2, state1)
    # Logged, checkpointed and evaluated once, by process 0.
    recs = records(root / "two")
    keys = [(r["step"], r["split"]) for r in recs]
    assert len(keys) == len(set(keys))
    assert [s for s, split in keys if split == "train"] == list(range(2, UNET_STEPS + 1, 2))
    assert [s for s, split in keys if split == "eval"] == [20, 40]
    assert sorted(int(p.name) for p in (root / "two" / "checkpoints").iterdir()
                  if p.name.isdigit()) == [30, 35, 40]
    assert all((root / "two" / "checkpoints" / str(s) / "colorjax_sha256.json").is_file()
               for s in (30, 35, 40))
    assert (root / "two" / "samples" / "step_40.png").is_file()
    assert sum("| gray baseline (ab = 0) |" in line for line in two.splitlines()) == 1
    assert not any("gray baseline" in line for line in process_lines(two, 1))


def test_odd_split_counts_every_image_once_and_matches_one_process(unet_runs):
    root, _, _, _ = unet_runs
    t2, t1 = table(root / "two", UNET_STEPS), table(root / "one", UNET_STEPS)
    for name in ("unet", "gray baseline (ab = 0)"):
        assert t2[name]["num_examples"] == t1[name]["num_examples"] == VAL_IMAGES
    # The same images in the same global batches: the gray baseline is the same numbers.
    for k, v in t1["gray baseline (ab = 0)"].items():
        assert t2["gray baseline (ab = 0)"][k] == pytest.approx(v, rel=1e-5), k
    for k in ("ssim", "ciede2000", "lpips"):
        assert t2["unet"][k] == pytest.approx(t1["unet"][k], rel=1e-3), k
    grid2 = np.asarray(Image.open(root / "two" / "samples" / f"step_{UNET_STEPS}.png"))
    grid1 = np.asarray(Image.open(root / "one" / "samples" / f"step_{UNET_STEPS}.png"))
    assert grid2.shape == grid1.shape
    assert np.mean(np.abs(grid2.astype(int) - grid1)) < 1


def test_sigkill_both_processes_then_resume_equals_uninterrupted(unet_runs, photos):
    root, o, _, _ = unet_runs
    workdir = root / "killed"
    done = kill_after_first_checkpoint(cli_args("unet", workdir, o), photos[1], workdir)
    assert done < UNET_STEPS

    out = run(cli_args("unet", workdir, o), processes=2, data_dir=photos[1],
              env={"JAX_LOG_COMPILES": "1"})  # logs persistent-cache hits too
    assert "resumed from step" in "\n".join(process_lines(out, 0))
    # Process 1 reads the train step it compiled in the first run from the cache, as
    # process 0 does (colorjax.platform.runtime: JAX alone writes process 0's only).
    for p in (0, 1):
        assert any("Persistent compilation cache hit for 'jit_step'" in line
                   for line in process_lines(out, p)), (p, out[-3000:])
    config = config_of("unet", o)
    step_k, state_k, data_k = checkpoint_state(workdir, config)
    step_u, state_u, data_u = checkpoint_state(root / "two", config)
    assert step_k == step_u == UNET_STEPS
    assert data_k == data_u
    assert_states_close(state_k, state_u)


def test_eval_and_export_modes_under_two_processes(unet_runs, photos):
    root, o, _, _ = unet_runs
    workdir = root / "two"
    trained = table(workdir, UNET_STEPS)
    (workdir / "eval" / f"validation_step_{UNET_STEPS}.json").unlink()
    out = run(cli_args("unet", workdir, o, mode="eval"), processes=2, data_dir=photos[1])
    evaluated = table(workdir, UNET_STEPS)
    assert evaluated["unet"]["num_examples"] == VAL_IMAGES
    for k, v in trained["unet"].items():  # the same checkpoint, the same batches
        assert evaluated["unet"][k] == pytest.approx(v, rel=1e-4), k
    assert (workdir / "eval" / f"validation_step_{UNET_STEPS}.png").is_file()
    assert not process_lines(out, 1) or not any("|" in l for l in process_lines(out, 1))

    out = run(cli_args("unet", workdir, o, mode="export"), processes=2, data_dir=photos[1])
    path = workdir / "export" / f"step_{UNET_STEPS}"
    assert any(l == f"exported to {path}" for l in process_lines(out, 0)), out[-2000:]
    assert not process_lines(out, 1)
    import colorjax
    colorizer = colorjax.Colorizer.load(str(path))
    photo = np.asarray(Image.open(next((photos[0] / "val").iterdir())))
    assert colorizer.colorize(photo).shape == photo.shape


def kill_after_first_checkpoint(args, data_dir, workdir):
    """Start a two-process run and SIGKILL all of it once a checkpoint is on disk."""
    proc = start(args, processes=2, data_dir=data_dir)
    ckpts = workdir / "checkpoints"
    deadline = time.time() + 240
    while proc.poll() is None and not (ckpts.is_dir() and any(p.name.isdigit()
                                                               for p in ckpts.iterdir())):
        if time.time() > deadline:
            kill_all(proc)
            pytest.fail("no checkpoint after 240 s (killed).\n"
                        + where_each_process_was(proc.communicate()[0]))
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the run ended before it could be killed; make it longer.\n"
                    + where_each_process_was(proc.communicate()[0]))
    kill_all(proc)  # SIGKILL to the launcher and both processes at once
    proc.communicate()
    return max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())


@pytest.mark.parametrize("model", ["unetgan", "unetvae", "unetddim"])
def test_other_families_killed_and_resumed_train_like_one_process(model, photos, tmp_path,
                                                                  unet_runs):
    del unet_runs  # only so that the folder is prepared by the run that tests it
    steps = 30
    o = overrides(model, photos, num_train_steps=steps, checkpoint_every=5, eval_every=steps)
    killed_at = kill_after_first_checkpoint(cli_args(model, tmp_path / "two", o), photos[1],
                                            tmp_path / "two")
    assert killed_at < steps
    two = run(cli_args(model, tmp_path / "two", o), processes=2, data_dir=photos[1])
    assert "resumed from step" in "\n".join(process_lines(two, 0))
    run(cli_args(model, tmp_path / "one", o), processes=1, data_dir=photos[1],
        devices_per_process=2, launcher=False)
    config = config_of(model, o)
    step2, state2, data2 = checkpoint_state(tmp_path / "two", config)
    step1, state1, data1 = checkpoint_state(tmp_path / "one", config)
    assert step2 == step1 == steps
    assert data2 == data1
    # Both runs compute the same math, compiled for one or two processes; adversarial
    # training amplifies the float differences (1.1e-4 measured after 30 steps for
    # unetgan); Adam moves each weight by up to lr = 2e-4 a step, so other batches would
    # differ by far more.
    tol = dict(rtol=1e-3, atol=5e-4) if model == "unetgan" else {}
    assert_states_close(state2, state1, **tol)
    t2, t1 = table(tmp_path / "two", steps), table(tmp_path / "one", steps)
    assert t2[model]["num_examples"] == VAL_IMAGES
    for k in ("ssim", "ciede2000"):  # samplers draw the same noise for the same batches
        assert t2[model][k] == pytest.approx(t1[model][k], rel=1e-3), k
    assert sum("| gray baseline (ab = 0) |" in line for line in two.splitlines()) == 1


def test_two_processes_of_two_devices_each(photos, tmp_path, unet_runs):
    root, o, _, _ = unet_runs
    out = run(cli_args("unet", tmp_path / "four", o), processes=2, data_dir=photos[1],
              devices_per_process=2)
    config = config_of("unet", o)
    _, state4, _ = checkpoint_state(tmp_path / "four", config)
    _, state1, _ = checkpoint_state(root / "one", config)
    # Same math; the cross-device means add four partial sums instead of two (float
    # reassociation, ~3e-6 in Adam's moments after 40 steps).
    assert_states_close(state4, state1, rtol=1e-4, atol=1e-5)
    assert table(tmp_path / "four", UNET_STEPS)["unet"]["num_examples"] == VAL_IMAGES
    assert sum("| gray baseline (ab = 0) |" in line for line in out.splitlines()) == 1


def test_sigterm_to_one_process_stops_both_at_the_same_step(photos, tmp_path, unet_runs):
    """A stop request that reaches one process only (the vote rides in the train step)."""
    _, o, _, _ = unet_runs
    o = {**o, "num_train_steps": 100_000, "checkpoint_every": 100_000,
         "eval_every": 100_000, "log_every": 1}
    workdir = tmp_path / "stopped"
    proc = start(cli_args("unet", workdir, o), processes=2, data_dir=photos[1])
    deadline = time.time() + 240
    log = workdir / "metrics.jsonl"
    while proc.poll() is None and not (log.is_file() and '"train"' in log.read_text()):
        if time.time() > deadline:
            kill_all(proc)
            pytest.fail("no training step logged after 240 s (killed).\n"
                        + where_each_process_was(proc.communicate()[0]))
        time.sleep(0.05)
    p1 = [pid for pid in children_of(proc) if _env_of(pid).get("JAX_PROCESS_ID") == "1"]
    if len(p1) != 1:
        kill_all(proc)
        pytest.fail("process 1 is not running.\n" + where_each_process_was(proc.communicate()[0]))
    os.kill(p1[0], signal.SIGTERM)
    out = finish(proc, 120, "two processes after SIGTERM to process 1")
    stopped = [l for l in process_lines(out, 0) if l.startswith("stopped at step")]
    assert len(stopped) == 1, out[-3000:]
    step = int(stopped[0].split()[3].rstrip(";"))
    ckpts = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert ckpts == [step]
    assert 0 < step < 100_000
    assert any("received signal" in l for l in process_lines(out, 1))


def _env_of(pid: int) -> dict:
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return {}
    return dict(kv.decode(errors="replace").split("=", 1) for kv in raw if b"=" in kv)


# --- the launcher itself --------------------------------------------------------------------

SLEEPER = "import os, sys, time; i = int(os.environ['JAX_PROCESS_ID']); {body}"


def launch_python(body: str, n: int = 2, **env):
    return subprocess.Popen(
        ["bash", str(LAUNCHER), str(n), sys.executable, "-c", SLEEPER.format(body=body)],
        cwd=REPO, env=dict(os.environ, **env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)


def children_of(proc) -> list[int]:
    """Python processes of `proc`'s session (the launched ones; not bash or sed)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines()
            if int(line.split()[1]) == proc.pid and "python" in os.path.basename(line.split()[2])]


def wait_for_children(proc, n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(children_of(proc)) == n:
            return
        time.sleep(0.05)
    kill_all(proc)
    pytest.fail(f"the launcher did not start {n} processes")


def test_launcher_stops_everything_when_one_process_dies():
    # Process 1 fails; process 0 ignores SIGTERM, as one stuck in a collective does.
    body = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "time.sleep(1); sys.exit(3) if i == 1 else time.sleep(600)")
    t0 = time.time()
    proc = launch_python(body, KILL_AFTER="2")
    out = finish(proc, 60, "launcher with a failing process", check=False)
    assert proc.returncode == 3, out
    assert time.time() - t0 < 15
    assert "process 1 exited with status 3" in out
    assert not children_of(proc)


def test_processes_failing_together_give_the_first_failures_status():
    """Both processes fail at the same moment: the launcher's exit status is one of theirs.
    It used to lose the race about 4 times in 10: the second process was already reaped
    when `wait -n -p` asked for it, the variable stayed unset and bash's `set -u` ended the
    launcher with status 1 ("done_pid: unbound variable")."""
    for _ in range(12):  # a race: each try loses it ~40% of the time with the bug
        out = subprocess.run(["bash", str(LAUNCHER), "2", "bash", "-c",
                              "sleep 0.3; exit $((3 + JAX_PROCESS_ID))"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode in (3, 4), out.stderr
        assert "unbound" not in out.stderr, out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_launcher_takes_its_processes(sig):
    proc = launch_python("time.sleep(600)")
    wait_for_children(proc, 2)
    procs = children_of(proc)
    os.kill(proc.pid, sig)  # the launcher only, not its process group
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in procs):
        time.sleep(0.05)
    left = [p for p in procs if _alive(p)]
    kill_all(proc)
    proc.communicate()
    assert not left, f"still running after the launcher got {sig.name}: {left}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_launched_processes_compile_as_the_tests_do(tmp_path):
    """The environment the tests' runs get (multiprocess_helpers): under the launcher each
    process has the tests' LLVM -O0 (conftest) once and its own device count."""
    env = _env(tmp_path, devices_per_process=2, single=False)
    body = "print(i, os.environ['XLA_FLAGS'])"
    proc = subprocess.Popen(
        ["bash", str(LAUNCHER), "2", sys.executable, "-c", SLEEPER.format(body=body)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    out = finish(proc, 60, "launcher printing its processes' XLA_FLAGS")
    flags = dict(line.split(" ", 2)[1:] for line in out.splitlines() if line.startswith("[p"))
    assert sorted(flags) == ["0", "1"], out
    for f in flags.values():
        assert f.split().count(TEST_OPT_LEVEL) == 1, out
        assert [t for t in f.split() if "device_count" in t] == \
            ["--xla_force_host_platform_device_count=2"], out
    assert _env(tmp_path, devices_per_process=4, single=True)["XLA_FLAGS"].split() == \
        ["--xla_force_host_platform_device_count=4", TEST_OPT_LEVEL]


def test_launcher_refuses_a_bad_process_count():
    out = subprocess.run(["bash", str(LAUNCHER), "two", "true"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "positive integer" in out.stderr
