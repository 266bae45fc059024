"""A frozen pretrained backbone (`config.model.backbone`, `colorjax.models.backbone`), as
every family holds it: the config checks of the families that never train it
(adversarial, VAE), init's tap shapes, the projection width, and the split of a network's
variables into its own collections and the frozen ones, which a train step reads but
never writes back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax import checks
from colorjax.models.backbone import BACKBONES, backbone_taps

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
