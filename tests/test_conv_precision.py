"""precision="bfloat16_convs": convolutions and dense layers in bfloat16, everything else
float32 (colorjax/models/conv_precision.py), and the oneDNN flag that makes it fast
(colorjax/platform/xla_cpu.py)."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.extend  # noqa: F401  (jax.extend.core's Jaxpr types)
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import blocks, conv_precision
from colorjax.objectives.precision import apply_in_precision
from colorjax.platform import xla_cpu
from conftest import REPO, xla_flags_for_tests


class _Net(nn.Module):
    """A conv, a depthwise conv, BatchNorm, a transposed conv, a dense layer."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = blocks.ConvNormAct(8)(x, train)
        x = blocks.Conv(8, (3, 3), feature_group_count=8, padding="SAME")(x)  # depthwise
        x = blocks.UpNormAct(4)(x, train)
        return nn.Dense(2)(x)


def _setup():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    net = _Net()
    return net, net.init(jax.random.key(1), x), x


def _ops(fn, *args):
    """(primitive name, operand dtypes, output dtypes) of every conv and dot in fn's jaxpr."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
                found.append((eqn.primitive.name,
                              tuple(str(v.aval.dtype) for v in eqn.invars),
                              tuple(str(v.aval.dtype) for v in eqn.outvars),
                              eqn.params.get("feature_group_count", 1)))
            for value in eqn.params.values():  # pjit, custom_vjp, remat, scan bodies
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_convolutions_and_dense_layers_compute_in_bfloat16_and_hand_back_float32():
    net, variables, x = _setup()
    fn = lambda v, x: apply_in_precision(net, v, x, dtype=conv_precision.NAME)
    ops = _ops(fn, variables, x)
    grouped = [o for o in ops if o[3] > 1]
    plain = [o for o in ops if o[3] == 1]
    # The 3x3 conv, the four phases of the transposed conv, the dense layer.
    assert len(plain) == 6, ops
    assert all(o[1] == ("bfloat16", "bfloat16") and o[2] == ("bfloat16",) for o in plain), ops
    assert fn(variables, x).dtype == jnp.float32
    # The depthwise conv is left in float32 (shifted taps on CPU: no conv op at all there).
    assert all(o[1] == ("float32", "float32") for o in grouped), ops


def test_it_is_the_float32_function_to_bfloat16_rounding_and_leaves_the_modules_as_they_were():
    net, variables, x = _setup()
    want = net.apply(variables, x)
    got = apply_in_precision(net, variables, x, dtype=conv_precision.NAME)
    scale = float(jnp.max(jnp.abs(want)))
    assert float(jnp.max(jnp.abs(got - want))) < 0.03 * scale
    assert float(jnp.max(jnp.abs(got - want))) > 0  # it did compute in bfloat16
    # Afterwards the same modules compute in float32 again (the dtype was restored).
    assert all(o[1] == ("float32", "float32") for o in _ops(lambda v, x: net.apply(v, x),
                                                            variables, x))


def test_gradients_reach_the_float32_weights_close_to_float32s():
    net, variables, x = _setup()

    def loss(params, dtype):
        out = apply_in_precision(net, {**variables, "params": params}, x, dtype=dtype)
        return jnp.mean(out ** 2)

    want = jax.grad(loss)(variables["params"], jnp.float32)
    got = jax.grad(loss)(variables["params"], conv_precision.NAME)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == jnp.float32
        assert float(jnp.linalg.norm(g - w)) <= 0.05 * float(jnp.linalg.norm(w)) + 1e-6


def test_a_model_that_chose_its_dtype_keeps_it():
    dense = nn.Dense(3, dtype=jnp.float32)
    x = jnp.ones((2, 4))
    v = dense.init(jax.random.key(0), x)
    ops = _ops(lambda v, x: apply_in_precision(dense, v, x, dtype=conv_precision.NAME), v, x)
    assert ops and all(o[1] == ("float32", "float32") for o in ops)


def test_the_unet_trains_in_bfloat16_convs_as_in_float32():
    """The `:cpu` UNet's real training step on a fixed batch: the loss falls as far in
    bfloat16_convs as in float32 (within 10%), and the state stays float32."""
    from colorjax.objectives import make_objective
    from colorjax.platform import parallel
    from colorjax.presets import load_config
    from colorjax.training import loop as train

    rng = np.random.default_rng(0)
    l = rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)
    batch = {"l": l, "ab": (0.3 * np.tanh(2 * l) * np.array([1.0, -0.5])).astype(np.float32)}
    losses = {}
    for precision in ("float32", conv_precision.NAME):
        config = load_config("configs/unet.py:cpu")
        config.model.features = (8, 16)
        config.data.image_size, config.batch_size, config.precision = 16, 4, precision
        config.optimizer.warmup_steps, config.optimizer.learning_rate = 0, 3e-3
        mesh = parallel.create_mesh()
        obj = make_objective(config)
        state = train.create_state(config, obj, mesh, 40)
        step = train.make_train_step(obj, mesh)
        sharded = parallel.shard_batch(batch, mesh)
        curve = []
        for i in range(40):
            state, m = step(state, sharded, jax.random.key(i))
            curve.append(float(m["loss"]))
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))
        losses[precision] = curve
    f32, mixed = losses["float32"], losses[conv_precision.NAME]
    assert f32[-1] < 0.5 * f32[0]
    assert mixed[-1] < 0.5 * mixed[0]
    assert abs(mixed[-1] - f32[-1]) <= 0.1 * f32[0]


# --- the oneDNN flag ----------------------------------------------------------------------


@pytest.fixture
def backend_not_started(monkeypatch):
    """This test process's backend is up; the programs' is not when they ask."""
    from jax._src import xla_bridge

    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)


def test_the_onednn_flag_is_added_for_bfloat16_convs_only(backend_not_started):
    assert xla_cpu.BFLOAT16_CONVS == conv_precision.NAME
    environ = {"XLA_FLAGS": "--a=1"}
    assert xla_cpu.configure_for_precision("bfloat16_convs", environ)
    assert environ["XLA_FLAGS"] == f"--a=1 {xla_cpu.ONEDNN_CALLS}"
    assert xla_cpu.configure_for_precision("bfloat16_convs", environ)  # once only
    assert environ["XLA_FLAGS"] == f"--a=1 {xla_cpu.ONEDNN_CALLS}"
    for precision in ("float32", "bfloat16", None):
        environ = {"XLA_FLAGS": "--a=1"}
        assert not xla_cpu.configure_for_precision(precision, environ)
        assert environ == {"XLA_FLAGS": "--a=1"}
    # A user's own setting of the flag is theirs.
    environ = {"XLA_FLAGS": "--xla_cpu_experimental_onednn_custom_call=false"}
    assert not xla_cpu.configure_for_precision("bfloat16_convs", environ)
    assert environ == {"XLA_FLAGS": "--xla_cpu_experimental_onednn_custom_call=false"}


def test_an_exports_precision_decides_the_flag(tmp_path, backend_not_started):
    (tmp_path / "metadata.json").write_text('{"model": "unet"}')
    (tmp_path / "config.json").write_text('{"precision": "bfloat16_convs"}')
    environ = {}
    xla_cpu.configure_for_export(str(tmp_path), None, environ)
    assert xla_cpu.ONEDNN_CALLS in environ["XLA_FLAGS"].split()
    environ = {}
    xla_cpu.configure_for_export(str(tmp_path), "float32", environ)  # --precision wins
    assert xla_cpu.ONEDNN_CALLS not in environ.get("XLA_FLAGS", "").split()
    # "auto" infers in float32: no oneDNN calls (their programs cannot be cached).
    (tmp_path / "config.json").write_text('{"precision": "auto"}')
    environ = {xla_cpu.AUTO_PRECISION_ENV: "bfloat16_convs"}
    xla_cpu.configure_for_export(str(tmp_path), None, environ)
    assert xla_cpu.ONEDNN_CALLS not in environ.get("XLA_FLAGS", "").split()


def test_the_training_cli_compiles_its_convolutions_for_onednn(tmp_path):
    """`python -m colorjax.main --config.precision=bfloat16_convs` trains, and its train
    step's convolutions are oneDNN's custom calls (JAX's dump of the compiled program)."""
    dump = tmp_path / "dump"
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{xla_flags_for_tests(1)} --xla_dump_to={dump} "
                         "--xla_dump_hlo_module_re=jit_step")
    # Two runs, the second resuming the first: a run that prepares the demo data first
    # (TFDS's imports) showed no cache warning even without the filter; a resume does.
    for steps in (1, 2):
        out = subprocess.run(
            [sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
             f"--workdir={tmp_path / 'run'}", "--config.precision=bfloat16_convs",
             "--config.data.image_size=16", "--config.batch_size=4",
             "--config.model.features=(8, 16)",
             f"--config.num_train_steps={steps}",
             "--config.eval.num_examples=4",  # every program is cached (runtime.py)
             "--config.eval_every=2", "--config.checkpoint_every=1",
             f"--compilation_cache={tmp_path / 'cache'}"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        # XLA:CPU cannot serialize oneDNN's calls for JAX's cache: that warning is not theirs.
        assert "persistent compilation cache" not in out.stderr, out.stderr[-3000:]
    texts = [p.read_text() for p in dump.glob("*after_optimizations.txt")]
    assert texts, sorted(p.name for p in dump.iterdir())[:20]
    if "amx_bf16" in xla_cpu.cpu_flags():  # verified there; elsewhere XLA decides
        assert any("__onednn$convolution" in t for t in texts)
    # (Elsewhere XLA may keep its own convolutions for bfloat16: the run must work.)


# --- precision="auto" ---------------------------------------------------------------------


def test_auto_is_bfloat16_convs_on_a_cpu_with_amx_only(monkeypatch):
    monkeypatch.delenv(xla_cpu.AUTO_PRECISION_ENV, raising=False)
    assert xla_cpu.automatic_precision({}, frozenset({"avx512f", "amx_bf16"})) == "bfloat16_convs"
    assert xla_cpu.automatic_precision({}, frozenset({"avx512f", "avx512_bf16"})) == "float32"
    assert xla_cpu.automatic_precision({xla_cpu.AUTO_PRECISION_ENV: "float32"},
                                       frozenset({"amx_bf16"})) == "float32"
    with pytest.raises(ValueError, match="COLORJAX_AUTO_PRECISION='fp8': allowed: "
                                         "float32, bfloat16_convs"):
        xla_cpu.automatic_precision({xla_cpu.AUTO_PRECISION_ENV: "fp8"})


def test_auto_resolves_on_the_backend_the_model_runs_on(monkeypatch):
    from colorjax.objectives import precision as precision_lib

    monkeypatch.delenv(xla_cpu.AUTO_PRECISION_ENV, raising=False)
    monkeypatch.setattr(xla_cpu, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setenv("XLA_FLAGS", "--a=1")
    assert precision_lib.resolve("auto") == "float32"  # no oneDNN calls: bf16 convs don't pay
    monkeypatch.setenv("XLA_FLAGS", f"--a=1 {xla_cpu.ONEDNN_CALLS}")
    assert precision_lib.resolve("auto") == "bfloat16_convs"
    assert precision_lib.resolve("float32") == "float32"  # a stated precision is kept
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert precision_lib.resolve("auto") == "float32"  # an accelerator: float32 (no AMX)


def test_auto_adds_the_onednn_flag_where_it_chooses_bfloat16_convs(monkeypatch,
                                                                 backend_not_started):
    monkeypatch.setattr(xla_cpu, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    environ = {}
    assert xla_cpu.configure_for_precision("auto", environ)
    assert environ["XLA_FLAGS"] == xla_cpu.ONEDNN_CALLS
    environ = {xla_cpu.AUTO_PRECISION_ENV: "float32"}
    assert not xla_cpu.configure_for_precision("auto", environ)
    assert "XLA_FLAGS" not in environ


def test_the_configs_default_to_auto():
    from colorjax.presets import load_config

    assert load_config("configs/unet.py:cpu").precision == "auto"
    assert load_config("configs/unetddpm.py").precision == "auto"
    # Converted published networks compute as their authors' code, in float32, everywhere.
    for published in ("eccv16", "siggraph17", "ddcolor", "deoldify"):
        assert load_config(f"configs/{published}.py").precision == "float32", published


def test_a_bad_auto_override_is_one_line_from_the_cli(tmp_path):
    env = dict(os.environ, **{xla_cpu.AUTO_PRECISION_ENV: "fp8"})
    out = subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                          f"--workdir={tmp_path / 'run'}"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == ("error: COLORJAX_AUTO_PRECISION='fp8': allowed: float32, "
                                  "bfloat16_convs")
    assert not (tmp_path / "run").exists()
