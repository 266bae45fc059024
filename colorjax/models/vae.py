"""Networks of the conditional VAE colorizers (`basicvae`, `unetvae`).

- `PosteriorEncoder` q(z | L, ab): sees the gray image and its true colours, returns the
  mean and log-variance of a `latent_dim` Gaussian. Used only in training.
- `ConditionalDecoder` p(ab | z, L): an L -> ab network that also receives z. The image
  structure comes from L (UNet skips for `unetvae`; for `basicvae`, the bottleneck and the
  full-resolution L before the head), so z only has to carry the colour *choice* -- unlike
  the original project's VAEs, which squeezed the whole image through the latent.

z enters the decoder at the bottleneck (added to every position); with `condition="film"`
it also scales and shifts every decoder level (FiLM, Perez et al. 2018), which makes z hard
to ignore once the skips already explain the structure.

With a pretrained backbone (`backbone_width` > 0 and the decoder's `taps=` argument, the
frozen backbone's feature maps of L), the decoder also reads ImageNet features of the gray
image: `unetvae` concatenates beside each skip the tap nearest its stride and at the
bottleneck the deepest tap (as `UNet` does); `basicvae`, without skips, the deepest tap at
its bottleneck only. The encoder never sees them. Without taps the parameters are unchanged.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from colorjax.config import registry
from colorjax.config.checks import ConfigError
from colorjax.models.backbone import check_taps, projected_width
from colorjax.models.blocks import ConvNormAct, OutputHead, UpNormAct
from colorjax.models.generators import tap_at
from colorjax.models.unet import DoubleConv

CONDITIONS = ("bottleneck", "film")
# The registry's VAE decoder networks -> whether the decoder has UNet skip connections.
VAE_DECODERS = {"decoder": False, "unet_decoder": True}


class PosteriorEncoder(nn.Module):
    """(L, ab) -> (mu, logvar), each (N, latent_dim): strided convs, global average pool."""

    features: Sequence[int] = (32, 64, 128, 256)
    latent_dim: int = 256
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, l, ab, train: bool = False):
        x = jnp.concatenate([l, ab], axis=-1)
        for feats in self.features:
            x = ConvNormAct(feats, 4, 2, self.norm, self.act)(x, train)
        x = jnp.mean(x, axis=(1, 2))  # any image size: the latent is global
        stats = nn.Dense(2 * self.latent_dim)(x)
        mu, logvar = jnp.split(stats, 2, axis=-1)
        return mu, logvar


class FiLM(nn.Module):
    """x * (1 + gamma(z)) + beta(z), per channel. Zero-initialised: starts as identity, so
    the decoder begins as the plain L -> ab network and learns how much z should steer."""

    @nn.compact
    def __call__(self, x, z):
        gb = nn.Dense(2 * x.shape[-1], kernel_init=nn.initializers.zeros)(z)
        gamma, beta = jnp.split(gb[:, None, None, :], 2, axis=-1)
        return x * (1.0 + gamma) + beta


class ConditionalDecoder(nn.Module):
    """(L (N,H,W,1), z (N,latent)) -> ab (N,H,W,2); H, W multiples of `downsample_factor`.

    `skips=True` is the UNet (each level's L features concatenated on the way up);
    `skips=False` a plain encoder-decoder whose only path around the bottleneck is the
    gray image itself, concatenated before the last convolutions.
    """

    features: Sequence[int] = (32, 64, 128, 256)
    skips: bool = True
    condition: str = "film"
    norm: str = "batch"
    act: str = "leaky_relu"
    backbone_width: int = 0  # > 0: `taps` (backbone feature maps of L) are required

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.features) - 1)

    @nn.compact
    def __call__(self, l, z, train: bool = False, taps=None):
        if self.condition not in CONDITIONS:
            raise ConfigError("config.model.condition", f"{self.condition!r} is not allowed",
                              str(CONDITIONS))
        check_taps(self, taps)
        x, skips = l, []
        for feats in self.features[:-1]:
            x = DoubleConv(feats, self.norm, self.act)(x, train)
            skips.append(x)
            x = ConvNormAct(feats, 4, 2, self.norm, self.act)(x, train)
        last = len(self.features) - 1
        if taps is not None:  # the deepest backbone tap beside the bottleneck's L features
            x = jnp.concatenate([x] + tap_at(self.backbone_width, taps, x, last, taps[-1]), -1)
        # z added at every bottleneck position, then mixed with L's features by the convs.
        # Zero-initialised like FiLM: at init the decoder is exactly the L -> ab network, and
        # the (mostly pure-noise) z dimensions do not drown L's features while it learns.
        x = x + nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(z)[:, None, None, :]
        x = DoubleConv(self.features[-1], self.norm, self.act)(x, train)
        for level, feats, skip in zip(reversed(range(last)), reversed(self.features[:-1]),
                                      reversed(skips)):
            x = UpNormAct(feats, self.norm, self.act)(x, train)
            if self.skips:
                x = jnp.concatenate([x, skip] + tap_at(self.backbone_width, taps, skip, level),
                                    -1)
            x = DoubleConv(feats, self.norm, self.act)(x, train)
            if self.condition == "film":
                x = FiLM()(x, z)
        if not self.skips:  # the structure of the image, at full resolution
            x = DoubleConv(self.features[0], self.norm, self.act)(
                jnp.concatenate([x, l], -1), train)
        return OutputHead(2, "tanh")(x)


def build_vae(model_config) -> tuple[PosteriorEncoder, ConditionalDecoder]:
    """The (encoder, decoder) pair of `config.model` (`basicvae` or `unetvae`), whose
    fields `objectives.vae.validate` has checked; the registry says which decoder."""
    network = registry.spec(model_config).network
    if network not in VAE_DECODERS:
        raise ConfigError("config.model.name", f"{model_config.name!r} is not a VAE",
                          str(list(registry.names("vae"))))
    encoder = PosteriorEncoder(features=tuple(model_config.encoder_features),
                               latent_dim=int(model_config.latent_dim), norm=model_config.norm)
    # Width of the pretrained backbone's projected taps (colorjax.models.backbone); 0: none.
    backbone_width = projected_width(model_config)
    decoder = ConditionalDecoder(features=tuple(model_config.features),
                                 skips=VAE_DECODERS[network],
                                 condition=model_config.condition, norm=model_config.norm,
                                 backbone_width=backbone_width)
    return encoder, decoder
