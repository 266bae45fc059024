"""Classification colorizer (Zhang, Isola and Efros 2016, "Colorful Image Colorization"): a
UNet predicts a distribution over the in-gamut ab bins per pixel, trained with a
class-rebalanced soft cross-entropy, decoded by the annealed mean.

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the frozen pretrained
EfficientNet-Lite0 encoder feeding the decoder (`config.model.backbone`).
"""

import ml_collections

from colorjax.color.ab_bins import PRIOR_MIX, TEMPERATURE
from colorjax.presets.unet import VARIANTS, add_backbone_fields, apply_variant, base_config

__all__ = ["VARIANTS", "get_config"]


def get_config(variant: str = ""):
    c = base_config(variant)
    c.model.name = "colorful"
    c.model.network = "unet"  # unet | resnet (then model.width)
    c.model.features = (32, 64, 128, 256)  # UNet widths per level
    c.model.width = 64  # ResNet width
    c.model.norm = "batch"  # batch | group | instance | none
    add_backbone_fields(c)
    c.classification = ml_collections.ConfigDict(dict(
        # Annealed mean: 1 = the mean (dull), near 0 = the mode (vivid, patchy); the paper's
        # 0.38. A runtime field: --mode=eval and colorize --temperature may change it.
        temperature=TEMPERATURE,
        # lambda of the rebalancing prior: 1 = plain cross-entropy, the paper's 0.5.
        prior_mix=PRIOR_MIX,
        # Training images the colour prior is counted from before step 1 (0 = all).
        prior_images=10_000,
    ))
    apply_variant(c, variant)
    return c
