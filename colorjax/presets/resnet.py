"""ResNet-18-encoder regression colorizer (MSE on ab)."""

from colorjax.presets import default
from colorjax.presets.unet import add_backbone_fields

VARIANTS = default.VARIANTS  # the shared ones: '' (GPU-sized) and 'cpu'


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "resnet"
    c.model.width = 64  # width of the first stage
    c.model.norm = "batch"  # batch | group | instance | none
    c.loss = "mse"  # mse | l1 | huber
    # > 0: rare (saturated) colours weigh more in the loss, 0.5 as in Zhang et al. 2016
    # (colorjax/objectives/rebalance.py); 0 = plain per-pixel loss.
    c.loss_rebalance = 0.0
    c.model.zero_output = False  # True: the output conv starts at zero (predicts gray)
    add_backbone_fields(c)  # model.backbone: none | vgg16 | efficientnet_lite0
    if variant == "cpu":
        c.model.width = 32
    return c
