"""Conditional VAE with a UNet decoder: the skips carry the structure of L, the latent z
(bottleneck + FiLM on every decoder level) only the colour choice. Loss = MSE + beta * KL.

Variants: unet.py's, `:cpu` and `:cpu_backbone` (the frozen pretrained EfficientNet-Lite0
feeding the decoder; `--config.model.backbone=...` on any variant).
"""

from colorjax.presets import basicvae, unet

VARIANTS = unet.VARIANTS


def get_config(variant: str = ""):
    c = unet.base_config(variant)
    base = unet.base_variant(variant)
    c.model.name = "unetvae"
    basicvae.add_vae_fields(c, base)
    unet.apply_backbone_variant(c, variant)
    return c
