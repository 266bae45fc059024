"""What every training family shares: the Objective base class, train state, optimizers, EMA.

The loop in `colorjax/training/loop.py` only ever calls `init`, `train_step` and `predict`; each
family (regression, adversarial, vae, diffusion) subclasses `Objective` and implements
`init`, `train_step` and `predict_with` as pure functions.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from colorjax.config import checks, registry
from colorjax.media.photo_io import PhotoIO
from colorjax.objectives.precision import (  # noqa: F401  (re-exported: objectives use them)
    PRECISIONS, apply_in_precision, cast_floats, compute_dtype)

# {"l": (N,H,W,1), "ab": (N,H,W,2)} in network range (colorjax.color); with
# config.model.hints also "hints" (N,H,W,3): hint ab and mask (colorjax.hints)
Batch = dict
HINT_PLANES = 3  # colorjax.hints.NUM_PLANES (not imported: objectives stay NumPy-free here)


def uses_hints(config) -> bool:
    """`config.model.hints` (False where absent: exports from before hints existed)."""
    return checks.boolean(config, "model.hints", default=False)


def uses_hint_propagation(config) -> bool:
    """A hint model that also reads its hints spread along the image
    (`config.model.hint_propagation`, colorjax/hints/propagation.py; False where absent:
    hint exports from before it existed read the sparse planes alone)."""
    return uses_hints(config) and checks.boolean(config, "model.hint_propagation",
                                                 default=False)


def rbg_key(rng):
    """An RBG key (XLA's RngBitGenerator) derived from any key.

    Threefry, the default, is a hash that XLA:CPU compiles slowly: for the test UNet, init
    compiled in 47 s with threefry keys and 7 s with RBG keys, the train step in 41 s and
    21 s (2 shared CPU cores). The bits are still a pure function of `rng`; they are not
    guaranteed to be identical across backends or shardings, which training does not need.
    """
    return jax.random.key(jax.random.bits(rng, dtype=jnp.uint32), impl="rbg")


def init_variables(module, rng, *args, **kwargs):
    """`module.init(rbg_key(rng), *args, train=False, **kwargs)` as one compiled program.

    Called eagerly, Flax's init runs every layer's initializer as its own small program;
    jitted whole with an RBG key it is one (a tiny UNet's `objective.init`: 8.1 s against
    1.4 s on a 2-core Intel Xeon, docs/benchmarks.md "The test suite's time"). Inside a
    jitted caller (the loop's init) the inner jit is inlined. `kwargs` are arrays or
    pytrees of them (the backbone's taps), never Python flags.
    """
    def init(key, args, kwargs):
        return module.init(key, *args, train=False, **kwargs)

    return jax.jit(init)(rbg_key(rng), args, kwargs)


def backbone_settings(config) -> tuple[str, bool, float]:
    """(`model.backbone`, whether it is trained, its peak learning rate) of a validated
    config; never trainable without a backbone."""
    backbone = checks.get(config, "model.backbone", default="none")
    trainable = backbone != "none" and bool(
        checks.get(config, "model.backbone_trainable", default=False))
    learning_rate = float(checks.get(config, "model.backbone_learning_rate", default=1e-5))
    return backbone, trainable, learning_rate


def example_batch(image_size: int, n: int = 1) -> Batch:
    """Zeros shaped like a batch of `n` images (L and ab): what `init` (and `jax.eval_shape`
    of it) needs to build a state's shapes."""
    return {"l": jnp.zeros((n, image_size, image_size, 1)),
            "ab": jnp.zeros((n, image_size, image_size, 2))}


def check_network_size(config, network: str) -> None:
    """ConfigError for the size fields of `network`: `model.width` (resnet) or
    `model.features` (the UNets), and the other one too where a config holds it: it is read
    once model.network (or model.name) changes, and a bad value should not wait until then."""
    if network == "resnet":
        checks.integer(config, "model.width", low=1)
    else:
        checks.sequence(config, "model.features", "integers", low=1, min_length=1)
    checks.integer(config, "model.width", low=1, default=None)
    checks.sequence(config, "model.features", "integers", low=1, min_length=1, default=None)


class Objective:
    """One training family, built from the config alone. A subclass defines three pure,
    jit-able methods:

    * `init(rng, batch, num_train_steps=None) -> state`: the optimizer (its schedule needs
      the run's length) comes with the step count; without one the state has none (for
      inference, or for `jax.eval_shape`)
    * `train_step(state, batch, rng) -> (state, metrics)`; a family with `step_constants`
      also takes them: `train_step(state, batch, rng, constants=...)`
    * `predict_with(variables, gray_l, rng, sampling=False, hints=None) -> ab`: inference
      without the training state (exports, `colorjax.Colorizer`), from
      `inference_variables(state)` alone. `hints` (N,H,W,3): colour hint planes for a model
      with `config.model.hints` (None: no hints, zero planes).

    They are not stubbed here, so that an object missing one still fails `hasattr`
    (`artifact._check_objective`) instead of returning None.
    """

    def read_shared_fields(self, config) -> None:
        """The fields every family reads alike: the optimizer, the EMA decay, the compute
        dtype (float32 for configs from before `precision`), the hints and the backbone's
        settings."""
        self.family = registry.spec(config.model).family
        self.opt_config = config.optimizer
        self.ema_decay = float(config.ema_decay)
        self.dtype = compute_dtype(config) if "precision" in config else jnp.float32
        self.hints = uses_hints(config)
        self.hint_propagation = uses_hint_propagation(config)
        self.backbone, self.backbone_trainable, self.backbone_learning_rate = (
            backbone_settings(config))

    # What the loop, export, artifact loading and the Colorizer read from the class: a
    # family declares these instead of being listed anywhere.
    family: str = ""  # its family's name (the registry's, for config.model.name)
    samples: bool = False  # whether `predict` draws (several colorizations make sense)
    # Decodes a distribution by the annealed mean at `self.temperature` (classification).
    decodes_with_temperature: bool = False
    # A pass over at most `prior_images` (0: all) before step 1 (`fit_data_statistics`).
    needs_data_statistics: bool = False
    prior_images: int = 0
    # Fields a command line may change for a trained run (colorjax.training.run_config).
    runtime_fields: tuple[str, ...] = ()
    photo_io: PhotoIO = PhotoIO()  # how a photo meets the network at inference
    downsample_factor: int = 1  # what image_size must be a multiple of
    # config.model.hints: the network's conditioning input is concat(L, hint planes);
    # with config.model.hint_propagation also the hints spread along the image.
    hints: bool = False
    hint_propagation: bool = False
    backbone: str = "none"  # config.model.backbone: pretrained taps feed the decoder

    def step_constants(self):
        """Frozen arrays the train step reads but never trains, checkpoints or exports (the
        perceptual term's VGG16), or None. The training loop hands them to the jitted step
        as an argument: closed over, they were compiled into the program as constants (59 MB
        of VGG16: a perceptual term's gradient compiled in 5.8 s against 0.4 s, DDColor-T's
        step in 38 s against 34; docs/benchmarks.md, "The test suite's time")."""
        return None

    def conditioning(self, gray_l: jax.Array, hints: jax.Array | None = None) -> jax.Array:
        """What the network reads: L (N,H,W,1), or for a hint model concat(L, hints)
        (N,H,W,4), zero planes (no hints) when `hints` is None, and with hint propagation
        concat(L, hints, propagated ab, confidence) (N,H,W,7). Pretrained backbones,
        fusion's classifier, the discriminator and the VAE encoder read L alone.
        Hints to a model trained without them: ValueError."""
        if not self.hints:
            if hints is not None:
                raise ValueError("this model was trained without colour hints "
                                 "(config.model.hints=False); it cannot take hints")
            return gray_l
        if hints is None:
            hints = jnp.zeros(gray_l.shape[:-1] + (HINT_PLANES,), gray_l.dtype)
        if hints.shape != gray_l.shape[:-1] + (HINT_PLANES,):
            raise ValueError(f"hints of shape {hints.shape}; expected "
                             f"{gray_l.shape[:-1] + (HINT_PLANES,)} (ab and mask planes)")
        planes = [gray_l, hints.astype(gray_l.dtype)]
        if self.hint_propagation:
            from colorjax.hints.propagation import propagate

            planes.append(propagate(gray_l, hints).astype(gray_l.dtype))
        return jnp.concatenate(planes, -1)

    def batch_hints(self, batch: Batch) -> jax.Array | None:
        """A training batch's hint planes for a hint model (None: no hints, or a model
        without them, which ignores any)."""
        return batch.get("hints") if self.hints else None

    def batch_conditioning(self, batch: Batch) -> jax.Array:
        """`conditioning` of a training batch's L and hint planes."""
        return self.conditioning(batch["l"], self.batch_hints(batch))

    def inference_variables(self, state: Any) -> Any:
        """What prediction needs, and all an export holds: the (EMA) params and the
        network's other collections (BatchNorm statistics, a frozen backbone); no optimizer
        state. Families with more than one network keep only the one prediction uses."""
        return {"params": eval_params(state.ema_params, state.params), **state.model_state}

    def predict(self, state: Any, gray_l: jax.Array, rng: jax.Array,
                sampling: bool = False, hints: jax.Array | None = None) -> jax.Array:
        """ab for gray_l from a training state; the same as an export would predict.
        `sampling` asks for a draw from the model's distribution instead of its usual
        prediction (a VAE's prior sample instead of `config.vae.sample_mode`); families
        that are deterministic, or always sample, ignore it. `hints`: see `conditioning`."""
        return self.predict_with(self.inference_variables(state), gray_l, rng, sampling,
                                 hints=hints)


@flax.struct.dataclass
class TrainState:
    """State of a single-network objective. `model_state` holds BatchNorm statistics
    ({} when the network has none); `ema_params` is None when EMA is off.

    `tx`, the optimizer, is static (not a leaf: jit, checkpoints and shardings see only
    arrays), as in flax.training's TrainState. A state built without a step count (for
    inference, or only for its shapes) has no optimizer: `tx` and `opt_state` are None.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    ema_params: Any
    tx: Any = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, params, model_state, tx, ema_params, **fields):
        """Step 0, with `tx`'s state for `params` (None without an optimizer)."""
        return cls(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                   opt_state=init_opt_state(tx, params), ema_params=ema_params, tx=tx,
                   **fields)


OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")


def check_optimizer(config, group: str = "optimizer") -> None:
    """ConfigError naming the first wrong field of `config.<group>` that `make_optimizer`
    reads (the discriminator's `disc_optimizer` has the same fields)."""
    checks.choice(config, f"{group}.name", OPTIMIZERS)
    checks.choice(config, f"{group}.schedule", SCHEDULES)
    checks.number(config, f"{group}.learning_rate", low=0, low_open=True)
    for beta in ("b1", "b2"):  # Adam's decay rates: 1 would never forget, above diverges
        checks.number(config, f"{group}.{beta}", low=0.0, high=1.0, high_open=True)
    checks.integer(config, f"{group}.warmup_steps", low=0)
    checks.number(config, f"{group}.grad_clip_norm", low=0.0, note="(0 = no clipping)")
    checks.number(config, f"{group}.end_lr_factor", low=0.0, high=1.0, default=None,
                  note="(the cosine schedule's final fraction of the peak)")
    checks.number(config, f"{group}.weight_decay", low=0.0, default=None)


def learning_rate_schedule(opt_config, num_train_steps: int) -> optax.Schedule:
    """Linear warm-up, then constant or cosine decay to `end_lr_factor` of the peak."""
    peak = opt_config.learning_rate
    warmup = int(opt_config.warmup_steps)
    if opt_config.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif opt_config.schedule == "cosine":
        decay = optax.cosine_decay_schedule(
            peak, max(1, num_train_steps - warmup), alpha=opt_config.end_lr_factor)
    else:
        raise checks.ConfigError("config.optimizer.schedule",
                                 f"{opt_config.schedule!r} is not allowed", str(SCHEDULES))
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(opt_config, num_train_steps: int) -> optax.GradientTransformation:
    """Adam/AdamW with the schedule above and optional global-norm gradient clipping."""
    lr = learning_rate_schedule(opt_config, num_train_steps)
    if opt_config.name == "adam":
        tx = optax.adam(lr, b1=opt_config.b1, b2=opt_config.b2)
    elif opt_config.name == "adamw":
        tx = optax.adamw(lr, b1=opt_config.b1, b2=opt_config.b2,
                         weight_decay=opt_config.weight_decay)
    else:
        raise checks.ConfigError("config.optimizer.name", f"{opt_config.name!r} is not allowed",
                                 str(OPTIMIZERS))
    if opt_config.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt_config.grad_clip_norm), tx)
    return tx


def optimizer_for(opt_config, num_train_steps: int | None):
    """`make_optimizer`, or None without a step count (a state for inference or shapes)."""
    return None if num_train_steps is None else make_optimizer(opt_config, num_train_steps)


def init_opt_state(tx, params):
    """The optimizer state of `params`, or None when there is no optimizer. Jitted: eagerly,
    every leaf's zeros would be a program of its own."""
    return None if tx is None else jax.jit(tx.init)(params)


def require_optimizer(tx, what: str = "this state"):
    """`tx`, or a clear error for a state that was built for inference only."""
    if tx is None:
        raise ValueError(f"{what} has no optimizer: it was initialised without "
                         "num_train_steps (for inference); pass num_train_steps to init to "
                         "train it")
    return tx


def init_ema(params, decay: float):
    """EMA copy of the parameters, or None when EMA is off (decay 0)."""
    return jax.jit(lambda p: jax.tree.map(jnp.copy, p))(params) if decay > 0 else None


def ema_update(ema_params, params, decay: float):
    """Exponential moving average of parameters (None stays None: EMA off)."""
    if ema_params is None:
        return None
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def optimizer_step(tx: optax.GradientTransformation, grads, opt_state, params):
    """One update of `params` by `tx`: (new params, new optimizer state, global grad norm)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)


def apply_gradients(state, grads, ema_decay, loss, *,
                    ema_of: Callable[[Any], Any] | None = None, advance_step: bool = True,
                    **fields):
    """The tail of a train step: update `state.params` by `state.tx` and its EMA, count
    the step.

    `ema_of(params)` picks the part the EMA tracks (default: all of it); `ema_decay` may
    be traced. `fields` replace other state fields (e.g. new BatchNorm statistics).
    `advance_step=False` for an update that is one of several in a step. Returns the new
    state and `{"loss", "grad_norm", "finite"}`; "finite" covers the new parameters and
    their EMA too (a finite loss says nothing of an EMA copy that diverged, and the
    checkpoint and export hold those), in the same flag the loop already reads.
    """
    tx = require_optimizer(state.tx)
    params, opt_state, grad_norm = optimizer_step(tx, grads, state.opt_state, state.params)
    ema = ema_update(state.ema_params, params if ema_of is None else ema_of(params), ema_decay)
    if advance_step:
        fields["step"] = state.step + 1
    new_state = state.replace(params=params, opt_state=opt_state, ema_params=ema, **fields)
    return new_state, {"loss": loss, "grad_norm": grad_norm,
                       "finite": is_finite(loss, grad_norm) & tree_is_finite((params, ema))}


def is_finite(*values) -> jax.Array:
    """True when every value is finite: the loop stops a run on the first step where not."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in values]))


def tree_is_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` is finite (None leaves: no leaves).
    A reduction per leaf inside the jitted step: no host sync of its own."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return is_finite(*leaves) if leaves else jnp.asarray(True)


def eval_params(ema_params, params):
    """Parameters for prediction: the EMA copy where there is one."""
    return params if ema_params is None else ema_params


LOSSES = ("mse", "l1", "huber")


def pixel_loss(kind: str, pred, target, delta: float = 1.0 / 110.0 * 10.0,
               weights=None) -> jax.Array:
    """Mean per-pixel loss between predicted and true ab (network units), each pixel
    weighted by `weights` (N, H, W) when given (colour rebalancing, `rebalance.py`).

    Huber's `delta` defaults to 10 Lab units of ab (in network units 10/AB_SCALE):
    quadratic for small colour errors, linear for large ones.
    """
    if kind == "mse":
        err = (pred - target) ** 2
    elif kind == "l1":
        err = jnp.abs(pred - target)
    elif kind == "huber":
        err = optax.huber_loss(pred, target, delta=delta)
    else:
        raise checks.ConfigError("config.loss", f"{kind!r} is not allowed", str(LOSSES))
    return jnp.mean(err if weights is None else err * weights[..., None])
