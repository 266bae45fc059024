"""Adversarial objective (gan, unetgan, pix2pix_resnet, wgan_gp): which parameters each update
touches, learning rates, the NoGAN -> GAN switch and its resume, the gradient penalty, and
that the generator actually learns.

Networks are tiny and images 16 px so that every test compiles in seconds on a CPU. All
steps go through the loop's own jitted, sharded `make_train_step` on the 2 test devices.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from skimage import data as skdata
from skimage import transform

from colorjax.platform import parallel
from colorjax.training.checkpoint import TrainCheckpointer
from colorjax.color import rgb_to_model_inputs
from colorjax.presets import load_config
from colorjax.objectives import make_objective
from colorjax.objectives.adversarial import AdversarialObjective, gradient_penalty, validate
from colorjax.training.loop import create_state, make_train_step
from conftest import tiny_config

SIZE = 16
NAMES = {"gan": "gan", "unetgan": "unetgan", "pix2pix_resnet": "pix2pix_resnet",
         "wgan_gp": "wgan"}  # model name -> config file


def cpu_config(config_file):
    return load_config(config_file, "cpu")


def gan_config(config_file, **adversarial):
    """The shared `tiny_config` of a GAN (widths 4-8-16, discriminator width 4, no
    perceptual loss), then `adversarial`'s fields."""
    c = tiny_config(config_file, size=SIZE, features=(4, 8, 16),
                    **{"adversarial.disc_features": 4, "adversarial.perceptual_weight": 0.0})
    if c.adversarial.discriminator == "patchgan":
        c.adversarial.disc_layers = 2  # a 3-layer (70x70) PatchGAN needs >= 24 px
    c.adversarial.update(adversarial)
    return c


def init_state(config, objective, mesh):
    """The loop's own replicated initial state. Non-partitionable threefry: the same init,
    compiled in seconds rather than ~40 s (jax 0.12's default is slow for XLA:CPU)."""
    with jax.threefry_partitionable(False):
        return create_state(config, objective, mesh, 100)


def copy(tree):
    return jax.tree.map(jnp.copy, tree)


def same(a, b) -> bool:
    return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))


def unchanged_leaves(a, b) -> list[str]:
    """Paths of the leaves that are equal in a and b."""
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)
    return [jax.tree_util.keystr(p) for (p, x), y in zip(flat_a, flat_b)
            if np.array_equal(x, y)]


def adam_count(opt_state) -> int:
    """How many updates an Adam optimizer state has seen."""
    is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)
    return int(next(s for s in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(s)).count)


@pytest.fixture(scope="module")
def mesh():
    return parallel.create_mesh()


@pytest.fixture(scope="module")
def batch(mesh):
    """Four real photographs at 16 px, sharded over the devices like the loop's batches."""
    names = ("astronaut", "coffee", "chelsea", "rocket")
    rgb = np.stack([transform.resize(getattr(skdata, n)(), (SIZE, SIZE), anti_aliasing=True)
                    for n in names]).astype(np.float32)
    l, ab = rgb_to_model_inputs(rgb)
    return parallel.shard_batch({"l": np.asarray(l), "ab": np.asarray(ab)}, mesh)


class Run:
    """An objective, its initial state and the loop's jitted step."""

    def __init__(self, config, mesh):
        self.config = config
        self.objective = make_objective(config)
        self.state0 = init_state(config, self.objective, mesh)
        self.step = make_train_step(self.objective, mesh)
        self.rng = jax.random.key(1)

    def steps(self, state, batch, n):
        history = []
        for _ in range(n):
            state, metrics = self.step(state, batch, self.rng)
            history.append(jax.device_get(metrics))
        return state, history


@pytest.fixture(scope="module")
def unetgan(batch, mesh):
    """pix2pix with separate learning rates (G 1e-3, D 1e-5) and a generator EMA."""
    c = gan_config("unetgan")
    c.optimizer.learning_rate = 1e-3
    c.disc_optimizer.learning_rate = 1e-5
    c.ema_decay = 0.5
    return Run(c, mesh)


@pytest.mark.slow
def test_finite_covers_the_generator_ema(unetgan, batch):
    """A NaN EMA copy (what ema_decay > 1 grew into) stops the run, though G's loss and
    gradients, which never read the EMA, are finite (issue 37)."""
    state = copy(unetgan.state0)
    state = state.replace(ema_params=jax.tree.map(lambda x: x * jnp.nan, state.ema_params))
    _, (metrics,) = unetgan.steps(state, batch, 1)
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert not bool(metrics["finite"])


REQUIRED_METRICS = {"loss", "grad_norm", "finite", "g_adv", "g_l1", "g_perceptual", "d_loss",
                    "d_real", "d_fake", "gp", "d_grad_norm", "gan_phase"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unetgan", "gan"])  # wgan_gp, pix2pix_resnet: below
def test_one_step_changes_both_parameter_sets(name, unetgan, batch, mesh):
    if name == "unetgan":
        run = unetgan
    else:  # and the mixed-precision path: G and D compute in bfloat16
        c = gan_config(NAMES[name])
        c.precision = "bfloat16"
        run = Run(c, mesh)
    state, (metrics,) = run.steps(copy(run.state0), batch, 1)
    assert int(state.step) == 1
    assert unchanged_leaves(run.state0.params, state.params) == []
    # In bfloat16 the critic's last bias may keep its value: its gradient sums the backward
    # pass's bfloat16 cotangents (sigma(real) - 1)/N and sigma(fake)/N, which cancel exactly
    # when their float32 sum (here ~2e-4) is below bfloat16's resolution at 0.44 (2e-3). It
    # did so with one device, not with two.
    may_stay = ["['Dense_0']['bias']"] if name == "gan" else []
    stayed = unchanged_leaves(run.state0.disc_params, state.disc_params)
    assert [p for p in stayed if p not in may_stay] == []
    assert REQUIRED_METRICS <= set(metrics)
    assert bool(metrics["finite"])
    assert metrics["gan_phase"] == 1.0
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["loss"] == pytest.approx(
        metrics["g_adv"] + 100.0 * metrics["g_l1"], rel=1e-5)


@pytest.mark.slow
def test_separate_learning_rates_are_honored(unetgan, batch):
    """Adam's first update of every parameter is +-lr * g / (|g| + eps), i.e. at most lr and
    lr for any parameter with a non-tiny gradient: the largest change reads off the lr."""
    state, _ = unetgan.steps(copy(unetgan.state0), batch, 1)
    max_change = lambda a, b: max(jax.tree.leaves(
        jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))
    assert max_change(unetgan.state0.params, state.params) == pytest.approx(1e-3, rel=2e-2)
    assert max_change(unetgan.state0.disc_params, state.disc_params) == pytest.approx(
        1e-5, rel=2e-2)  # float32 rounding of a 1e-5 step


@pytest.mark.slow
def test_each_update_touches_only_its_own_network(unetgan, batch):
    obj, state0 = unetgan.objective, unetgan.state0
    rng = jax.random.key(3)
    fake = obj.predict(state0, batch["l"], rng)
    after_d, d_metrics = jax.jit(obj.discriminator_step)(copy(state0), batch, fake, rng)
    for field in ("step", "params", "model_state", "opt_state", "ema_params"):
        assert same(getattr(state0, field), getattr(after_d, field)), field
    assert unchanged_leaves(state0.disc_params, after_d.disc_params) == []
    assert np.isfinite(float(d_metrics["d_loss"]))

    after_g, g_metrics = jax.jit(obj.generator_step)(copy(state0), batch, rng)
    for field in ("step", "disc_params", "disc_model_state", "disc_opt_state"):
        assert same(getattr(state0, field), getattr(after_g, field)), field
    assert unchanged_leaves(state0.params, after_g.params) == []
    assert np.isfinite(float(g_metrics["loss"]))


@pytest.mark.slow
def test_predict_uses_the_generator_ema(unetgan, batch):
    state, _ = unetgan.steps(copy(unetgan.state0), batch, 1)
    obj = unetgan.objective
    ab = np.asarray(jax.jit(obj.predict)(state, batch["l"], jax.random.key(0)))
    variables = obj.inference_variables(state)  # what an export holds: G only
    assert set(variables) == {"params", "batch_stats"}
    assert same(variables["params"], state.ema_params)
    apply = jax.jit(lambda p: obj.generator.apply(
        {"params": p, **state.model_state}, batch["l"], train=False))
    np.testing.assert_allclose(ab, np.asarray(apply(state.ema_params)), atol=1e-6)
    assert not np.allclose(ab, np.asarray(apply(state.params)), atol=1e-6)
    assert ab.shape == batch["ab"].shape


@pytest.mark.slow
def test_unetgan_learns_a_fixed_batch(unetgan, batch):
    """Training, not just shapes: 30 steps on one batch cut the generator's L1 term."""
    _, history = unetgan.steps(copy(unetgan.state0), batch, 30)
    l1 = [float(m["g_l1"]) for m in history]
    assert all(bool(m["finite"]) for m in history)
    assert np.mean(l1[-3:]) < 0.7 * l1[0], l1


@pytest.mark.slow
def test_pix2pix_resnet_switches_phase_at_the_configured_step_and_resumes(batch, mesh,
                                                                          tmp_path):
    # Feature loss on the first two VGG16 taps only: the deeper blocks are pruned from
    # the compiled step, which keeps this test fast.
    c = gan_config("pix2pix_resnet", nogan_steps=2, perceptual_weight=0.25,
                   perceptual_layer_weights=(1.0, 1.0, 0.0, 0.0, 0.0))
    run = Run(c, mesh)
    assert run.objective.use_perceptual
    ckpt = TrainCheckpointer(str(tmp_path / "ckpt"), max_to_keep=5, async_save=False)
    state, history = copy(run.state0), []
    for step in range(1, 5):
        history_state = jax.device_get(state)  # the step donates its input
        state, (metrics,) = run.steps(state, batch, 1)
        history.append(metrics)
        if step == 2:  # NoGAN phase: D untouched, its optimizer never stepped
            assert same(run.state0.disc_params, state.disc_params)
            assert adam_count(state.disc_opt_state) == 0
        if step == 3:  # the first GAN step trains both networks
            assert unchanged_leaves(history_state.params, state.params) == []
            assert unchanged_leaves(history_state.disc_params, state.disc_params) == []
        if step in (1, 3):  # one checkpoint in each phase
            ckpt.save(step, state, {}, c)
    assert [m["gan_phase"] for m in history] == [0.0, 0.0, 1.0, 1.0]
    assert [m["d_loss"] == 0.0 for m in history] == [True, True, False, False]
    assert history[0]["g_adv"] == 0.0
    assert history[2]["g_adv"] > 0.0
    assert all(m["g_perceptual"] > 0 for m in history)
    assert adam_count(state.disc_opt_state) == 2
    assert adam_count(state.opt_state) == 4
    final = state

    for start in (1, 3):  # resume in either phase: a fresh process would do exactly this
        # A blank target: only its structure, shapes and shardings guide the restore.
        target = jax.device_put(jax.tree.map(jnp.zeros_like, run.state0),
                                parallel.replicated(mesh))
        resumed, _ = ckpt.restore(start, target)
        assert int(resumed.step) == start
        resumed, rest = run.steps(resumed, batch, 4 - start)
        assert [m["gan_phase"] for m in rest] == [m["gan_phase"] for m in history[start:]]
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     jax.device_get(resumed), jax.device_get(final))
    ckpt.close()


@pytest.mark.slow
def test_wgan_gp_runs_n_critic_critic_updates_per_generator_update(batch, mesh):
    run = Run(gan_config("wgan", n_critic=3), mesh)
    assert run.state0.disc_model_state == {}  # InstanceNorm critic: no batch statistics
    state, (metrics,) = run.steps(copy(run.state0), batch, 1)
    assert unchanged_leaves(run.state0.params, state.params) == []
    # E[D(fake)] - E[D(real)] and the penalty are blind to the critic's output bias.
    assert unchanged_leaves(run.state0.disc_params, state.disc_params) == [
        f"['Conv_{run.config.adversarial.disc_layers + 1}']['bias']"]
    assert REQUIRED_METRICS <= set(metrics)
    assert adam_count(state.disc_opt_state) == 3
    assert adam_count(state.opt_state) == 1
    assert metrics["gp"] > 0
    assert bool(metrics["finite"])
    assert metrics["d_loss"] == pytest.approx(
        metrics["d_fake"] - metrics["d_real"] + 10.0 * metrics["gp"], rel=1e-4, abs=1e-5)
    assert metrics["g_adv"] == pytest.approx(-metrics["d_fake"], abs=0.5)  # after D moved


class TinyCritic(nn.Module):
    """Per-pixel linear critic on (L, ab), averaged over pixels: grad_ab = w_ab / (H W)."""

    @nn.compact
    def __call__(self, l, ab):
        return jnp.mean(nn.Conv(1, (1, 1))(jnp.concatenate([l, ab], -1)), axis=(1, 2, 3))


def test_gradient_penalty_matches_a_hand_computation():
    rng = jax.random.key(0)
    k1, k2, k3, k4 = jax.random.split(rng, 4)
    l = jax.random.normal(k1, (3, 4, 5, 1))
    real, fake = jax.random.normal(k2, (3, 4, 5, 2)), jax.random.normal(k3, (3, 4, 5, 2))

    # Tiny flax critic: ||grad|| = ||w_ab|| / sqrt(H W) for every image.
    critic = TinyCritic()
    params = critic.init(k4, l, real)
    w_ab = np.asarray(params["params"]["Conv_0"]["kernel"])[0, 0, 1:, 0]
    expected = (np.linalg.norm(w_ab) / np.sqrt(20) - 1.0) ** 2
    gp = gradient_penalty(lambda l_, ab_: critic.apply(params, l_, ab_), l, real, fake, rng)
    assert float(gp) == pytest.approx(expected, rel=1e-5)

    # Quadratic critic D = sum(L * ab^2): the gradient 2 L ab_hat depends on where the
    # interpolate lies, so this also checks eps ~ U[0, 1] per image.
    gp = gradient_penalty(lambda l_, ab_: jnp.sum(l_ * ab_**2, axis=(1, 2, 3)), l, real, fake,
                          rng)
    eps = np.asarray(jax.random.uniform(rng, (3, 1, 1, 1)))
    hat = eps * np.asarray(real, np.float64) + (1 - eps) * np.asarray(fake, np.float64)
    norms = np.sqrt(np.sum((2 * np.asarray(l, np.float64) * hat) ** 2, axis=(1, 2, 3)))
    assert float(gp) == pytest.approx(np.mean((norms - 1) ** 2), rel=1e-5)


def test_gradient_penalty_is_zero_gradient_safe():
    """A critic flat in ab (zero gradient) gives GP = 1 and finite (zero) parameter
    gradients; a plain sqrt would give NaN there."""
    l, ab = jnp.zeros((2, 4, 4, 1)), jnp.ones((2, 4, 4, 2))
    critic = TinyCritic()
    params = jax.tree.map(jnp.zeros_like, critic.init(jax.random.key(0), l, ab))
    loss = lambda p: gradient_penalty(lambda l_, ab_: critic.apply(p, l_, ab_), l, ab, -ab,
                                      jax.random.key(1))
    value, grads = jax.value_and_grad(loss)(params)
    assert float(value) == pytest.approx(1.0)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", sorted(NAMES))
def test_cpu_configs_build(name):
    c = cpu_config(NAMES[name])
    assert c.model.name == name
    assert set(c.disc_optimizer) == set(c.optimizer)
    obj = make_objective(c)
    assert isinstance(obj, AdversarialObjective)
    assert c.data.image_size % obj.downsample_factor == 0
    expected = {"gan": ("encoder_decoder", "conv", "bce"),
                "unetgan": ("unet", "patchgan", "bce"),
                "pix2pix_resnet": ("resnet_unet", "patchgan", "bce"),
                "wgan_gp": ("residual_unet", "patchgan", "wgan_gp")}[name]
    assert (c.model.generator, c.adversarial.discriminator, c.adversarial.loss) == expected
    assert (c.adversarial.nogan_steps > 0) == (name == "pix2pix_resnet")


@pytest.mark.parametrize("field, value, message", [
    ("adversarial.loss", "hinge", r"config.adversarial.loss: 'hinge'.*allowed.*bce"),
    ("adversarial.n_critic", 0, r"config.adversarial.n_critic: 0.*allowed"),
    ("adversarial.nogan_steps", -1, r"config.adversarial.nogan_steps: -1.*allowed"),
    ("adversarial.disc_norm", "layer", r"config.adversarial.disc_norm: 'layer'.*allowed"),
    ("adversarial.perceptual_layer_weights", (1.0, 2.0),
     r"perceptual_layer_weights.*allowed: 5 numbers"),
    ("disc_optimizer.name", "sgd", r"config.disc_optimizer.name: 'sgd'.*allowed"),
    ("model.generator", "vit", r"config.model.generator: 'vit'.*allowed"),
    ("data.image_size", 16, r"config.data.image_size: 16 is too small.*disc_layers"),
])
def test_bad_config_fields_are_named(field, value, message):
    c = cpu_config("unetgan")
    section, key = field.split(".")
    c[section][key] = value
    with pytest.raises(ValueError, match=message):
        validate(c)


def test_wgan_gp_refuses_a_batchnorm_critic():
    c = cpu_config("wgan")
    c.adversarial.disc_norm = "batch"
    with pytest.raises(ValueError, match=r"disc_norm: 'batch'.*allowed.*"
                                         r"\(with config.adversarial.loss='wgan_gp'\)"):
        make_objective(c)
