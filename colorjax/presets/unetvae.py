"""Conditional VAE with a UNet decoder: the skips carry the structure of L, the latent z
(bottleneck + FiLM on every decoder level) only the colour choice. Loss = MSE + beta * KL.

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the frozen pretrained
EfficientNet-Lite0 feeding the decoder (`config.model.backbone`; on any variant:
`--config.model.backbone=efficientnet_lite0 --config.model.backbone_width=32`).
"""

from colorjax.presets import basicvae, default

VARIANTS = {"": "GPU-sized",
            "cpu": "CPU-sized: small widths and batches, minutes on a laptop",
            "cpu_backbone": "cpu with the frozen pretrained EfficientNet-Lite0 encoder"}


def get_config(variant: str = ""):
    default.check_variant(variant, VARIANTS)
    base = "cpu" if variant == "cpu_backbone" else variant
    c = default.get_config(base)
    c.model.name = "unetvae"
    basicvae.add_vae_fields(c, base)
    if variant == "cpu_backbone":
        c.model.backbone = "efficientnet_lite0"
        c.model.backbone_width = 32
    return c
