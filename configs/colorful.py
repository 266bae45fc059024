"""Classification colorizer (Zhang, Isola and Efros 2016, "Colorful Image Colorization"): a
UNet predicts a distribution over the in-gamut ab bins per pixel, trained with a
class-rebalanced soft cross-entropy, decoded by the annealed mean.

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the frozen pretrained
EfficientNet-Lite0 encoder feeding the decoder (`config.model.backbone`).
"""

import ml_collections

from configs import default
from configs.unet import add_backbone_fields

VARIANTS = ("", "cpu", "cpu_backbone")


def get_config(variant: str = ""):
    if variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; allowed: '' (GPU-sized), "
                         "'cpu', 'cpu_backbone' (cpu with the EfficientNet-Lite0 encoder)")
    c = default.get_config("cpu" if variant == "cpu_backbone" else variant)
    c.model.name = "colorful"
    c.model.network = "unet"  # unet | resnet (then model.width)
    c.model.features = (32, 64, 128, 256)  # UNet widths per level
    c.model.width = 64  # ResNet width
    c.model.norm = "batch"  # batch | group | instance | none
    add_backbone_fields(c)
    c.classification = ml_collections.ConfigDict(dict(
        # Annealed mean: 1 = the mean (dull), near 0 = the mode (vivid, patchy); the paper's
        # 0.38. A runtime field: --mode=eval and colorize --temperature may change it.
        temperature=0.38,
        # lambda of the rebalancing prior: 1 = plain cross-entropy, the paper's 0.5.
        prior_mix=0.5,
        # Training images the colour prior is counted from before step 1 (0 = all).
        prior_images=10_000,
    ))
    if variant in ("cpu", "cpu_backbone"):
        c.model.features = (16, 32, 64, 128)
    if variant == "cpu_backbone":
        c.model.backbone = "efficientnet_lite0"
        c.model.backbone_width = 32
    return c
