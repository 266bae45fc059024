"""A frozen pretrained backbone (`config.model.backbone`, `colorjax.models.backbone`), as
every family holds it: the config checks of the families that never train it
(adversarial, VAE), init's tap shapes, the projection width, and the split of a network's
variables into its own collections and the frozen ones, which a train step reads but
never writes back.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from colorjax import checks
from colorjax.models.backbone import BACKBONES, backbone_taps, load_backbone

# Variable collections of frozen pretrained weights: read by the step, never written.
FROZEN_COLLECTIONS = ("backbone",)


def check_backbone(config) -> str:
    """`config.model.backbone` (default "none") and, with one, `model.backbone_width`
    (default 64); `model.backbone_trainable`, if set, must be False: frozen only here."""
    backbone = checks.choice(config, "model.backbone", BACKBONES, default="none")
    if backbone != "none":
        checks.integer(config, "model.backbone_width", low=1, default=64)
        checks.choice(config, "model.backbone_trainable", (False,), default=False,
                      note="(only the regression family fine-tunes its backbone)")
    return backbone


def backbone_width(config) -> int:
    """Channels of each projected backbone tap; 0 without a backbone."""
    if checks.get(config, "model.backbone", default="none") == "none":
        return 0
    return int(checks.get(config, "model.backbone_width", default=64))


def init_taps(backbone: str, weights, l) -> list:
    """Zeros shaped like the backbone's taps of `l`, for `init` (no backbone forward)."""
    shapes = jax.eval_shape(lambda w: backbone_taps(backbone, w, l), weights)
    return [jnp.zeros(t.shape, t.dtype) for t in shapes]


def split_frozen(variables: dict) -> tuple[dict, dict]:
    """(the network's own collections, the frozen ones) of a variables/model_state dict."""
    own = {k: v for k, v in variables.items() if k not in FROZEN_COLLECTIONS}
    return own, {k: v for k, v in variables.items() if k in FROZEN_COLLECTIONS}


# --- frozen weights and checkpoints --------------------------------------------------------
# Training checkpoints leave the frozen weights out (they are the installed package's, MBs
# that never change); a restore puts them back. Every family keeps them as a collection
# named in FROZEN_COLLECTIONS somewhere inside `state.model_state` (the VAE: inside its
# decoder's), never in params: a trainable backbone is params and is saved.


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
    backbone = getattr(objective, "backbone", "none")
    return None if backbone == "none" else load_backbone(backbone)


def load_frozen_like(target, objective, sharding):
    """`target` (e.g. abstract shapes) with each frozen collection replaced by
    `frozen_weights(objective)`, placed on `sharding`."""
    own, frozen = _partition(getattr(target, "model_state", None))
    if not frozen:
        return target
    weights = jax.device_put(frozen_weights(objective), sharding)

    def fill(tree):
        return {k: (weights if k in FROZEN_COLLECTIONS else fill(v)) for k, v in tree.items()}

    return target.replace(model_state=_merge(own, fill(frozen)))
