"""Deep Koalarization (Baldassarre, Morín and Rodés-Guirao 2017, "Deep Koalarization: Image
Colorization using CNNs and Inception-ResNet-v2"): an encoder of L, a pretrained classifier's
global embedding of the gray photo tiled over the encoder's output and fused with it, then
a decoder to ab.

The paper's layout (Table 1): encoder 64/2, 128, 128/2, 256, 256/2, 512, 512, 256 (3x3 convs,
ReLU; "/2" is stride 2, so the bottleneck is at 1/8 of the input); fusion: the classifier's
embedding replicated at every bottleneck position, concatenated, then a 1x1 conv back to 256
with ReLU; decoder 128, up, 64, 64, up, 32, 2 (tanh), up. Here the classifier is
EfficientNet-Lite0 (`colorjax.models.efficientnet`, its pooled 1280-d embedding) instead of
Inception-ResNet-v2, the widths are configurable, and the decoder uses the shared x2
upsampling block, one per encoder downsampling.

The classifier is frozen: its weights live in the variable collection `BACKBONE`
("backbone"), never in the optimised "params", so a training family keeps them in its
`model_state` (no optimizer, EMA or weight decay on them), and its embedding passes through
`stop_gradient`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.color import gray_rgb
from colorjax.models.backbone import TapProjection
from colorjax.models.blocks import ConvNormAct, OutputHead, UpNormAct
from colorjax.models.efficientnet import efficientnet_features, load_efficientnet_lite0

BACKBONE = "backbone"  # the variable collection of the frozen classifier
BACKBONE_NAME = "efficientnet"  # its variable in that collection
EMBED_DIM = 1280  # EfficientNet-Lite0's pooled head width (Tan & Le 2019, Table 1)


def _genuine_weights() -> Any:
    """EfficientNet-Lite0's genuine weights as concrete arrays, also when called while
    tracing (init under jit or eval_shape): they are constants, never traced values."""
    with jax.ensure_compile_time_eval():
        return load_efficientnet_lite0()


def classifier_outputs(weights: Any, l_norm: jax.Array, size: int):
    """The frozen classifier's five feature taps (strides 2-32) and its 1280-d embedding
    (N, 1280) of the gray photo `l_norm` (N,H,W,1, network range): gray sRGB, resized
    (bilinear) to size x size, float32, no gradient."""
    rgb = gray_rgb(l_norm.astype(jnp.float32))
    n = rgb.shape[0]
    if rgb.shape[1:3] != (size, size):
        rgb = jnp.clip(jax.image.resize(rgb, (n, size, size, 3), "bilinear"), 0.0, 1.0)
    weights = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), weights)
    return jax.lax.stop_gradient(efficientnet_features(weights, rgb))


def classifier_embedding(weights: Any, l_norm: jax.Array, size: int) -> jax.Array:
    """The frozen classifier's 1280-d embedding (N, 1280) of the gray photo `l_norm`."""
    return classifier_outputs(weights, l_norm, size)[1]


class FusionColorizer(nn.Module):
    """L (N,H,W,1) in [-1,1] -> ab (N,H,W,2) in [-1,1]. With colour hints the input is
    (N,H,W,4), L then the hint planes (`colorjax.hints`); the classifier reads L alone.

    `features` gives the encoder widths, e.g. (64, 128, 256, 512) as in the paper:
    len(features)-1 stride-2 convolutions, so H and W must be multiples of
    `downsample_factor` = 2**(len(features)-1). `fusion_width` is the width of the encoder's
    output and of the fusion layer (256 in the paper); `embed_size` the side the gray photo
    is resized to for the classifier (224, EfficientNet-Lite0's native size).
    """

    features: Sequence[int] = (64, 128, 256, 512)
    norm: str = "batch"
    fusion_width: int = 256
    embed_size: int = 224
    # Classifier taps (0-4: strides 2, 4, 8, 16, 32 of its input) also fused at the
    # bottleneck, each projected to `tap_width` channels and resized to it. () is the
    # paper's network (the global embedding alone); see `fusion_taps` in configs/fusion.py.
    fusion_taps: Sequence[int] = ()
    tap_width: int = 32
    act: str = "relu"  # the paper's ReLU throughout
    out_act: str = "tanh"

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.features) - 1)

    @nn.compact
    def __call__(self, l: jax.Array, train: bool = False,
                 embedding: jax.Array | None = None) -> jax.Array:
        """`embedding` (N, 1280) replaces the classifier's embedding of `l` (for tests and
        analysis, see `classifier_embedding`); by default it is computed here, from the
        frozen weights."""
        # The frozen classifier, initialised with the genuine weights (not random ones);
        # always read, so init creates the collection.
        weights = self.variable(BACKBONE, BACKBONE_NAME, _genuine_weights).value
        taps = None
        if self.fusion_taps or embedding is None:
            if self.is_initializing():
                # Shapes are all init needs: skip the classifier's forward pass.
                taps, emb = jax.eval_shape(
                    lambda w, g: classifier_outputs(w, g, self.embed_size), weights, l[..., :1])
                taps = [jnp.zeros(t.shape, t.dtype) for t in taps]
                emb = jnp.zeros(emb.shape, emb.dtype)
            else:
                # The classifier reads the gray photo alone (channel 0), never the hints.
                taps, emb = classifier_outputs(weights, l[..., :1], self.embed_size)
            embedding = emb if embedding is None else embedding
        f, n = self.features, self.norm
        x = l
        for i in range(len(f) - 1):  # the paper's "w/2, 2w" pairs: halve, then widen
            x = ConvNormAct(f[i], 3, 2, n, self.act)(x, train)
            x = ConvNormAct(f[i + 1], 3, 1, n, self.act)(x, train)
        x = ConvNormAct(f[-1], 3, 1, n, self.act)(x, train)
        x = ConvNormAct(self.fusion_width, 3, 1, n, self.act)(x, train)
        # Fusion layer: the embedding at every bottleneck position, concatenated, 1x1 conv.
        emb = jnp.broadcast_to(embedding.astype(x.dtype)[:, None, None, :],
                               x.shape[:3] + (embedding.shape[-1],))
        maps = [TapProjection(self.tap_width, name=f"fusion_tap{i}")(
            taps[i], x.shape[1], x.shape[2], x.dtype) for i in self.fusion_taps]
        x = nn.relu(nn.Conv(self.fusion_width, (1, 1), name="fusion")(
            jnp.concatenate([x, emb, *maps], axis=-1)))
        for feats in reversed(f[:-1]):  # one x2 upsampling per encoder halving
            x = UpNormAct(feats, n, self.act)(x, train)
            x = ConvNormAct(feats, 3, 1, n, self.act)(x, train)
        return OutputHead(2, self.out_act)(x)

    @staticmethod
    def load_pretrained(variables: Any) -> Any:
        """`variables` (from `init`) with the `BACKBONE` collection replaced by the genuine
        EfficientNet-Lite0 weights; every other collection is kept."""
        variables = dict(variables)
        variables[BACKBONE] = {BACKBONE_NAME: _genuine_weights()}
        return variables
