"""Test setup: two host devices (multi-device code paths run on CPU), shared fixtures."""

import os
import pathlib

# XLA:CPU compiles the tests' programs with LLVM -O0 (`--xla_backend_optimization_level=0`,
# XLA's default is 2). The suite's time is mostly compilation of tiny programs that then run
# for milliseconds; -O0 cuts XLA's compile time by a quarter (docs/benchmarks.md, "The test
# suite's time"). The same HLO passes, fusions and library kernels (Eigen convolutions and
# matmuls) run; only LLVM's optimization of the generated loops is skipped, so results
# differ from -O2's by floating-point rounding. Only the tests do this: users' programs
# keep XLA's default.
TEST_OPT_LEVEL = "--xla_backend_optimization_level=0"


def xla_flags_for_tests(devices: int | None = 2, optimized: bool = False) -> str:
    """XLA_FLAGS for a process of the test suite: `devices` host CPU devices (None: no
    device count, for launch/local_cpu.sh, which sets its own) and TEST_OPT_LEVEL (left out
    with `optimized`: for runs of networks so large that unoptimised code costs more time
    than it saves). A test that sets XLA_FLAGS for a subprocess uses this (or
    TEST_XLA_FLAGS), so that every program the suite starts compiles as its own do."""
    count = [] if devices is None else [f"--xla_force_host_platform_device_count={devices}"]
    return " ".join(count + ([] if optimized else [TEST_OPT_LEVEL]))


# The test processes' (and their CLI subprocesses') flags: two CPU devices, so that the
# data-parallel paths (sharded batches, cross-device BatchNorm) are exercised.
TEST_XLA_FLAGS = xla_flags_for_tests(2)

# Must happen before jax is imported anywhere. An XLA_FLAGS of the caller's is kept (for
# this process and the xdist workers; the CLI runs the tests start get TEST_XLA_FLAGS).
os.environ.setdefault("XLA_FLAGS", TEST_XLA_FLAGS)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# A suite started in the background by a non-interactive shell (`pytest ... &` in a script)
# inherits SIGINT ignored, and so would every CLI run it starts: the Ctrl-C tests' SIGINT
# would do nothing. Python's own handler here; children then start with the default.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# config.precision="auto" computes in float32 in the suite on every CPU kind, so that its
# tolerances hold on a CPU with AMX too (where auto means bfloat16_convs); the tests of
# auto itself (test_conv_precision.py) unset it. Workers and CLI subprocesses inherit it.
os.environ.setdefault("COLORJAX_AUTO_PRECISION", "float32")
# The tests run as colorjax's programs do: with XLA:CPU's convolution choice (xla_cpu.py),
# which `import colorjax` alone does not make. Workers and CLI subprocesses inherit it.
from colorjax.platform import xla_cpu  # noqa: E402

xla_cpu.configure()

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

# `python -m colorjax.main` turns on JAX's persistent compilation cache (default
# ~/.cache/colorjax). The CLI runs the tests start use one fresh directory per test session
# instead, never the user's: identical tiny programs compile once a session, and every
# session starts cold, as CI does. Made by the controlling process (pytest-xdist's workers
# inherit its environment), removed at its end.
_SESSION_TMP = None
if "PYTEST_XDIST_WORKER" not in os.environ:
    _SESSION_TMP = tempfile.mkdtemp(prefix="colorjax-tests-")
    os.environ["COLORJAX_COMPILATION_CACHE"] = os.path.join(_SESSION_TMP,
                                                            "jax_compilation_cache")


# The tests' own processes use that cache too: many tests build the same tiny networks, and
# a program compiled by one test (or one xdist worker) is read back by the next instead of
# compiled again.
import jax  # noqa: E402

os.makedirs(os.environ["COLORJAX_COMPILATION_CACHE"], exist_ok=True)
jax.config.update("jax_compilation_cache_dir", os.environ["COLORJAX_COMPILATION_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per core up to 4. Each worker holds its
    own JAX runtime and compiled programs (the largest process of a full run peaked at
    5-7 GB resident, GNU time's maxresident), so more would trade memory for little."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def pytest_unconfigure(config):
    if _SESSION_TMP is not None:
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def torch_python() -> str:
    """The Python of the optional PyTorch peers (benchmarks/torch_*.py): `.venv-torch`, or
    COLORJAX_TORCH_PYTHON."""
    return os.environ.get("COLORJAX_TORCH_PYTHON", str(REPO / ".venv-torch" / "bin" / "python"))


def torch_python_works() -> bool:
    """Whether `torch_python()` exists and imports torch (else the peer tests skip)."""
    import subprocess

    path = torch_python()
    return os.path.exists(path) and subprocess.run(
        [path, "-c", "import torch"], capture_output=True).returncode == 0


@pytest.fixture
def shared_data():
    """`../shared/data` beside the repo, or skip: a user's machine will not have it."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"real photographs not available: {path} is absent")
    return path


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Prepared datasets go to a per-session temp dir, never to the user's cache."""
    monkeypatch.setenv("COLORJAX_DATA_DIR", str(tmp_path_factory.getbasetemp() / "tfds"))


# --- shared helpers (plain functions: `from conftest import tiny_config, photo_batch`) ----

# A constant learning rate from the first step. A schedule's length is compiled into the
# train step, so with this, CLI runs of any num_train_steps (a resume, a stopped run) compile
# the same step and read it from the session's compilation cache instead of compiling again.
CONSTANT_RATE = {"optimizer.warmup_steps": 0, "optimizer.schedule": "constant"}
# CONSTANT_RATE at a high rate: tests that check a loss falls in a few steps.
STEADY_LR = {**CONSTANT_RATE, "optimizer.learning_rate": 3e-3}
# Batches and evaluation small enough for a whole train/eval loop in seconds.
SMALL_LOOP = {"batch_size": 4, "eval.batch_size": 4, "eval.num_examples": 4}


def tiny_config(model: str = "unet", *, size: int = 16, features=(8, 16), **overrides):
    """`configs/<model>.py:cpu` at test size: `model.features` = `features`,
    `data.image_size` = `size`, then `overrides` in order, each a field by its dotted path
    (`**{"optimizer.learning_rate": 3e-3}`) or with `__` for the dots
    (`optimizer__learning_rate=3e-3`)."""
    from colorjax.presets import load_config

    fields = {"model.features": features, "data.image_size": size}
    fields.update({k.replace("__", "."): v for k, v in overrides.items()})
    return set_fields(load_config(model, "cpu"), fields)


def flags_of(fields: dict) -> list[str]:
    """`fields` (dotted paths) as the CLI's `--config.<field>=<value>` flags."""
    def text(v):
        return repr(v) if isinstance(v, tuple) else str(v)
    return [f"--config.{k}={text(v)}" for k, v in fields.items()]


def set_fields(config, fields: dict):
    """`config` with each dotted field of `fields` set, in order (as --config.<field> does)."""
    from colorjax.config.fields import set_field

    for path, value in fields.items():
        set_field(config, path, value)
    return config


def fit_fixed_batch(objective, state, batch, steps: int = 30):
    """`steps` jitted train steps on one batch (rng i at step i); (state, losses). Fails
    on the first step whose metrics say non-finite."""
    import jax

    step = jax.jit(objective.train_step)
    losses = []
    for i in range(steps):
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
        assert bool(metrics["finite"]), f"step {i}: non-finite loss or gradients"
    return state, losses


def loop_config(model: str = "unet", **overrides):
    """`tiny_config` with `SMALL_LOOP`'s batch and evaluation sizes, for the whole loop."""
    return tiny_config(model, **SMALL_LOOP, **overrides)


def photo_batch(n: int = 4, size: int = 16, photo: str = "astronaut", stride=(8, 8)):
    """`n` crops of skimage's `photo` at 64x64 px (crop i starts at row i*stride[0], column
    i*stride[1]), in network range: {"l": (n, size, size, 1), "ab": (n, size, size, 2)}."""
    import jax.numpy as jnp
    import numpy as np
    from skimage import data as skdata
    from skimage.transform import resize

    from colorjax import color

    img = resize(getattr(skdata, photo)(), (64, 64), anti_aliasing=True).astype(np.float32)
    dy, dx = stride
    crops = [img[i * dy:i * dy + size, i * dx:i * dx + size] for i in range(n)]
    l, ab = color.rgb_to_model_inputs(np.stack(crops))
    return {"l": jnp.asarray(l), "ab": jnp.asarray(ab)}


def restore_checkpoint(workdir, state, step: int | None = None):
    """(step, state, data_state) of `workdir`'s checkpoint `step` (default: the latest),
    restored onto the structure and shardings of `state`, as a resumed run does."""
    import os

    from colorjax.training.checkpoint import TrainCheckpointer

    ckpt = TrainCheckpointer(os.path.join(workdir, "checkpoints"))
    try:
        step = ckpt.latest_step() if step is None else step
        restored, data_state = ckpt.restore(step, state)
    finally:
        ckpt.close()
    return step, restored, data_state


IMAGENET_SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / \
    "imagenet-samples"


def imagenet_color_photos(step: int):
    """(images (N, 224, 224, 3) in [0, 1], their files) of every `step`-th sorted
    `../shared/data/imagenet-samples` photo (one per class, `<wnid>_<class>.JPEG`) that is
    in colour, as classifiers are evaluated: shorter side to 256 (bicubic), centre crop 224.
    Skips the test when the folder is absent."""
    import numpy as np
    import pytest
    from PIL import Image

    if not IMAGENET_SAMPLES.is_dir():
        pytest.skip(f"ImageNet sample photos not available: {IMAGENET_SAMPLES} is absent")
    images, kept = [], []
    for f in sorted(IMAGENET_SAMPLES.glob("*.JPEG"))[::step]:
        with Image.open(f) as im:
            if im.mode == "L":
                continue
            rgb = im.convert("RGB")
        a = np.asarray(rgb)
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
            continue  # grayscale stored as RGB
        w, h = rgb.size
        s = 256 / min(w, h)
        rgb = rgb.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BICUBIC)
        w, h = rgb.size
        left, top = (w - 224) // 2, (h - 224) // 2
        images.append(np.asarray(rgb.crop((left, top, left + 224, top + 224)),
                                 np.float32) / 255.0)
        kept.append(f)
    return np.stack(images), kept


# --- converted published models (tests/published_exports.py): random weights, the real CLI --
# Each is removed at the session's end (gigabytes that pytest would otherwise keep).


@pytest.fixture(scope="session")
def ddcolor_tiny_export(tmp_path_factory):
    """A DDColor-T export made by `python -m colorjax.convert --from=ddcolor_tiny` from a
    random state_dict (220 MB; ~20 s here)."""
    from published_exports import convert, ddcolor_state, write_state

    d = tmp_path_factory.mktemp("ddcolor_tiny")
    yield convert("ddcolor_tiny", write_state(d / "ddcolor_tiny.pth", ddcolor_state()),
                  d / "ddcolor_tiny")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def deoldify_wide_weights(tmp_path_factory):
    """A random state_dict of DeOldify's wide generator (ResNet-101; the stable and video
    releases), 874 MB in torch.save's zip layout (~15 s here)."""
    from published_exports import deoldify_state, write_state

    d = tmp_path_factory.mktemp("deoldify_wide")
    yield write_state(d / "wide_gen.pth", deoldify_state("wide"))
    shutil.rmtree(d, ignore_errors=True)  # the exports below are made in it too


@pytest.fixture(scope="session")
def deoldify_video_export(deoldify_wide_weights) -> str:
    """`python -m colorjax.convert --from=deoldify_video` of those weights (~45 s here)."""
    from published_exports import convert

    return convert("deoldify_video", deoldify_wide_weights,
                   deoldify_wide_weights.parent / "deoldify_video")


@pytest.fixture(scope="session")
def deoldify_artistic_export(tmp_path_factory):
    """`python -m colorjax.convert --from=deoldify_artistic` of a random state_dict of the
    deep generator (ResNet-34; 244 MB, 225 MB converted; ~13 s here)."""
    from published_exports import convert, deoldify_state, write_state

    d = tmp_path_factory.mktemp("deoldify_deep")
    yield convert("deoldify_artistic", write_state(d / "deep_gen.pth", deoldify_state("deep")),
                  d / "deoldify_artistic")
    shutil.rmtree(d, ignore_errors=True)
