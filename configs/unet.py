"""UNet regression colorizer (MSE on ab).

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the pretrained
EfficientNet-Lite0 encoder feeding the decoder (`config.model.backbone`).
"""

from configs import default

VARIANTS = {"": "GPU-sized",
            "cpu": "CPU-sized: small widths and batches, minutes on a laptop",
            "cpu_backbone": "cpu with the frozen pretrained EfficientNet-Lite0 encoder"}


def add_backbone_fields(c) -> None:
    """`config.model.backbone*` of the regression networks (colorjax/models/backbone.py)."""
    # none | vgg16 (the LPIPS VGG16) | efficientnet_lite0: a pretrained ImageNet network reads
    # the gray image; its feature maps feed the UNet's decoder levels (the ResNet's head).
    c.model.backbone = "none"
    c.model.backbone_width = 64  # channels each backbone tap is projected to
    # False: frozen (in model_state, taps outside the gradient); True: fine-tuned with its
    # own learning rate (same schedule shape as config.optimizer's).
    c.model.backbone_trainable = False
    c.model.backbone_learning_rate = 1e-5


def base_config(variant: str):
    """default's config for `variant` in VARIANTS (the UNet-shaped model configs share them)."""
    default.check_variant(variant, VARIANTS)
    return default.get_config("cpu" if variant == "cpu_backbone" else variant)


def apply_variant(c, variant: str) -> None:
    """The CPU widths, and for cpu_backbone the frozen EfficientNet-Lite0 encoder."""
    if variant in ("cpu", "cpu_backbone"):
        c.model.features = (16, 32, 64, 128)
    if variant == "cpu_backbone":
        c.model.backbone = "efficientnet_lite0"
        c.model.backbone_width = 32


def get_config(variant: str = ""):
    c = base_config(variant)
    c.model.name = "unet"
    c.model.features = (32, 64, 128, 256)  # widths per level
    c.model.norm = "batch"  # batch | group | instance | none
    c.loss = "mse"  # mse | l1 | huber
    # > 0: rare (saturated) colours weigh more in the loss, 0.5 as in Zhang et al. 2016
    # (colorjax/objectives/rebalance.py); 0 = plain per-pixel loss.
    c.loss_rebalance = 0.0
    add_backbone_fields(c)
    apply_variant(c, variant)
    return c
