"""UNet-GAN (pix2pix, Isola et al. 2017): UNet generator, 70x70 PatchGAN judging (L, ab),
G loss = BCE adversarial + 100 * L1, Adam(2e-4, b1=0.5) for both networks.

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the frozen pretrained
EfficientNet-Lite0 feeding the decoder (`config.model.backbone`; on any variant:
`--config.model.backbone=efficientnet_lite0 --config.model.backbone_width=32`).
"""

from colorjax.presets import gan, unet

VARIANTS = unet.VARIANTS


def get_config(variant: str = ""):
    c = unet.base_config(variant)
    base = unet.base_variant(variant)
    c.model.name = "unetgan"
    gan.add_adversarial_fields(c, base)
    c.model.generator = "unet"
    unet.apply_backbone_variant(c, variant)
    return c
