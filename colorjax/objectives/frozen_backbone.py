"""A pretrained backbone (`config.model.backbone`, `colorjax.models.backbone`), as every
family holds it: the config checks, init's tap shapes, the projection width, where its
weights live, its taps, the optimizer, and the split of a network's variables into its own
collections and the frozen ones, which a train step reads but never writes back.

Two layouts, the same in every family (only the dict the network's variables sit in
differs: the VAE's decoder's, the others' top level):

- frozen (the default): the weights are the collection `"backbone"` beside the network's
  BatchNorm statistics (`model_state`), never in params; the taps are computed once per
  step outside the gradient (`frozen_taps`).
- trainable (`config.model.backbone_trainable=True`): the weights are `params["backbone"]`
  (`place_weights`), so they are optimised, EMA'd and checkpointed like the network's;
  `split_optimizer` gives them their own peak learning rate
  `config.model.backbone_learning_rate` and keeps their BatchNorm statistics
  (`params["backbone"]["batch_stats"]`, EfficientNet-Lite0's) fixed; the taps are computed
  inside the gradient (`network_variables`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from colorjax.config import checks
from colorjax.models.backbone import (BACKBONES, backbone_taps, load_backbone, projected_width,
                                      tap_shapes)
from colorjax.objectives.base import make_optimizer

# Variable collections of frozen pretrained weights: read by the step, never written.
FROZEN_COLLECTIONS = ("backbone",)
# The key of a trainable backbone's weights in the params of the network that reads it.
BACKBONE = "backbone"


def check_backbone(config) -> str:
    """`config.model.backbone` (default "none") and, with one, `model.backbone_width`
    (default 64), `model.backbone_trainable` (a boolean, default False) and, when trainable,
    `model.backbone_learning_rate` (a number >= 0, default 1e-5)."""
    backbone = checks.choice(config, "model.backbone", BACKBONES, default="none")
    # Checked while unused too: turning the backbone on must not reveal a bad value only then.
    checks.integer(config, "model.backbone_width", low=1, default=64)
    checks.boolean(config, "model.backbone_trainable", default=False)
    checks.number(config, "model.backbone_learning_rate", low=0.0, default=1e-5)
    return backbone


def backbone_width(config) -> int:
    """Channels of each projected backbone tap; 0 without a backbone."""
    return projected_width(config.model)


def init_taps(backbone: str, weights, l) -> list:
    """Zeros shaped like the backbone's taps of `l` (float32), for `init`: shapes from
    `tap_shapes`, so init neither runs nor traces the backbone (`weights` is unused)."""
    del weights
    return [jnp.zeros(shape, jnp.float32) for shape in tap_shapes(backbone, l.shape)]


def split_frozen(variables: dict) -> tuple[dict, dict]:
    """(the network's own collections, the frozen ones) of a variables/model_state dict."""
    own = {k: v for k, v in variables.items() if k not in FROZEN_COLLECTIONS}
    return own, {k: v for k, v in variables.items() if k in FROZEN_COLLECTIONS}


def backbone_labels(params):
    """multi_transform labels: "backbone" for a trainable backbone's weights (under the first
    key "backbone" of a path, then "params"), "frozen" for its other collections (BatchNorm
    statistics), "network" for the rest. The backbone may sit at the top of `params`
    (regression, adversarial, diffusion) or deeper (the VAE's `params["decoder"]`)."""
    def label(path, _):
        keys = [getattr(k, "key", None) for k in path]
        if BACKBONE not in keys:
            return "network"
        i = keys.index(BACKBONE)
        return "backbone" if i + 1 < len(keys) and keys[i + 1] == "params" else "frozen"
    return jax.tree_util.tree_map_with_path(label, params)


def split_optimizer(opt_config, num_train_steps: int, backbone_learning_rate: float):
    """`make_optimizer` for the network, the same with peak `backbone_learning_rate` for the
    backbone's weights (labels: `backbone_labels`), gradients clipped by their global norm
    over both first."""
    def variant(**fields):
        c = copy.deepcopy(opt_config)
        for k, v in fields.items():
            setattr(c, k, v)
        return make_optimizer(c, num_train_steps)

    tx = optax.multi_transform(
        {"network": variant(grad_clip_norm=0.0),
         "backbone": variant(grad_clip_norm=0.0, learning_rate=backbone_learning_rate),
         "frozen": optax.set_to_zero()}, backbone_labels)
    if opt_config.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt_config.grad_clip_norm), tx)
    return tx


def backbone_optimizer(opt_config, num_train_steps: int | None, trainable: bool,
                       backbone_learning_rate: float):
    """The optimizer of the params that hold (trainable) or do not hold the backbone:
    `split_optimizer` or `make_optimizer`; None without a step count (a state for inference
    or shapes)."""
    if num_train_steps is None:
        return None
    if trainable:
        return split_optimizer(opt_config, num_train_steps, backbone_learning_rate)
    return make_optimizer(opt_config, num_train_steps)


def place_weights(params: dict, collections: dict, weights, trainable: bool):
    """(params, collections) of one network with the backbone's `weights` added: in
    `params["backbone"]` (trainable) or as the collection `collections["backbone"]`
    (frozen: state, not params; no optimizer, EMA or weight decay on it)."""
    if trainable:
        return {**params, BACKBONE: weights}, dict(collections)
    return dict(params), {**collections, FROZEN_COLLECTIONS[0]: weights}


def frozen_taps(backbone: str, collections):
    """A function of L giving the frozen backbone's taps from the network's `collections`,
    or None when there is none there (no backbone, or a trainable one)."""
    if backbone == "none" or not collections or FROZEN_COLLECTIONS[0] not in collections:
        return None
    return lambda l: backbone_taps(backbone, collections[FROZEN_COLLECTIONS[0]], l)


def network_variables(backbone: str, params, collections, gray_l, taps=None):
    """(the network's own variables `{"params", **collections}`, the taps of L or None) from
    params and collections in either layout: the backbone in `params["backbone"]`
    (trainable: the gradient reaches its weights, not its BatchNorm statistics) or in
    `collections["backbone"]` (frozen: no gradient). `taps` given: already computed (the
    frozen taps of the step, outside the gradient)."""
    collections = {} if collections is None else collections
    if backbone == "none":
        return {"params": params, **collections}, None
    rest = split_frozen(collections)[0]
    if BACKBONE in params:  # trainable
        weights = {k: v if k == "params" else jax.lax.stop_gradient(v)
                   for k, v in params[BACKBONE].items()}
        params = {k: v for k, v in params.items() if k != BACKBONE}
        if taps is None:
            taps = backbone_taps(backbone, weights, gray_l, trainable=True)
    elif taps is None:
        taps = backbone_taps(backbone, collections[FROZEN_COLLECTIONS[0]], gray_l)
    return {"params": params, **rest}, taps


# --- frozen weights and checkpoints --------------------------------------------------------
# Training checkpoints leave the frozen weights out (they are the installed package's, MBs
# that never change); a restore puts them back. Every family keeps them as a collection
# named in FROZEN_COLLECTIONS somewhere inside `state.model_state` (the VAE: inside its
# decoder's), never in params: a trainable backbone is params (`params["backbone"]`, the
# VAE's `params["decoder"]["backbone"]`) and is saved.


def _partition(tree):
    """(tree without the frozen collections, the frozen ones in the same nesting)."""
    if not isinstance(tree, Mapping):
        return tree, {}
    own, frozen = {}, {}
    for key, value in tree.items():
        if key in FROZEN_COLLECTIONS:
            frozen[key] = value
        else:
            own[key], inner = _partition(value)
            if inner:
                frozen[key] = inner
    return own, frozen


def _merge(own, frozen):
    if not frozen:
        return own
    merged = dict(own)
    for key, value in frozen.items():
        merged[key] = value if key in FROZEN_COLLECTIONS else _merge(own[key], value)
    return merged


def holds_frozen(model_state) -> bool:
    """Whether a model_state tree holds frozen pretrained weights."""
    return bool(_partition(model_state)[1])


def has_frozen(state) -> bool:
    """Whether `state.model_state` holds frozen pretrained weights."""
    return holds_frozen(getattr(state, "model_state", None))


def without_frozen(state):
    """`state` with the frozen collections removed from its model_state (what a
    checkpoint stores)."""
    if not has_frozen(state):
        return state
    return state.replace(model_state=_partition(state.model_state)[0])


def with_frozen(stripped, source):
    """`stripped` (from `without_frozen`) with `source`'s frozen collections put back."""
    frozen = _partition(getattr(source, "model_state", None))[1]
    if not frozen:
        return stripped
    return stripped.replace(model_state=_merge(stripped.model_state, frozen))


def frozen_weights(objective):
    """What each frozen collection of `objective`'s state holds, loaded from the installed
    package: the network's own pretrained part (`load_pretrained`, fusion's classifier), or
    the weights of `config.model.backbone`; None when there is none."""
    load_pretrained = getattr(getattr(objective, "model", None), "load_pretrained", None)
    if load_pretrained is not None:
        return load_pretrained({})[FROZEN_COLLECTIONS[0]]
    return None if objective.backbone == "none" else load_backbone(objective.backbone)


def load_frozen_like(target, objective, sharding):
    """`target` (e.g. abstract shapes) with each frozen collection replaced by
    `frozen_weights(objective)`, placed on `sharding`."""
    own, frozen = _partition(getattr(target, "model_state", None))
    if not frozen:
        return target
    weights = frozen_weights(objective)  # cached arrays, shared by the whole process

    def fill(tree):  # copies: a training step donates its state's buffers
        return {k: (jax.device_put(weights, sharding, may_alias=False)
                    if k in FROZEN_COLLECTIONS else fill(v)) for k, v in tree.items()}

    return target.replace(model_state=_merge(own, fill(frozen)))
