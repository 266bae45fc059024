"""UNet-GAN (pix2pix, Isola et al. 2017): UNet generator, 70x70 PatchGAN judging (L, ab),
G loss = BCE adversarial + 100 * L1, Adam(2e-4, b1=0.5) for both networks.

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the frozen pretrained
EfficientNet-Lite0 feeding the decoder (`config.model.backbone`; on any variant:
`--config.model.backbone=efficientnet_lite0 --config.model.backbone_width=32`).
"""

from colorjax.presets import default, gan

VARIANTS = {"": "GPU-sized",
            "cpu": "CPU-sized: small widths and batches, minutes on a laptop",
            "cpu_backbone": "cpu with the frozen pretrained EfficientNet-Lite0 encoder"}


def get_config(variant: str = ""):
    default.check_variant(variant, VARIANTS)
    base = "cpu" if variant == "cpu_backbone" else variant
    c = default.get_config(base)
    c.model.name = "unetgan"
    gan.add_adversarial_fields(c, base)
    c.model.generator = "unet"
    if variant == "cpu_backbone":
        c.model.backbone = "efficientnet_lite0"
        c.model.backbone_width = 32
    return c
