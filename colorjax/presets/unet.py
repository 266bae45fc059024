"""UNet regression colorizer (MSE on ab; the CPU variants: L1, see below).

Variants: `:cpu` (CPU widths) and `:cpu_backbone`, the same with the pretrained
EfficientNet-Lite0 encoder feeding the decoder (`config.model.backbone`). Both train by
default on the six demo photos (colorjax_demo), which cannot teach what colour things are,
so they train a model that says so (`demo_recipe`; docs/results.md has the measurements).
"""

from colorjax.presets import default

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


def base_variant(variant: str) -> str:
    """default's variant under `variant` in VARIANTS: cpu_backbone is cpu with a backbone."""
    return "cpu" if variant == "cpu_backbone" else variant


def base_config(variant: str):
    """default's config for `variant` in VARIANTS (the UNet-shaped model configs share them)."""
    default.check_variant(variant, VARIANTS)
    return default.get_config(base_variant(variant))


def apply_variant(c, variant: str) -> None:
    """The CPU widths, and for cpu_backbone the frozen EfficientNet-Lite0 encoder."""
    if variant in ("cpu", "cpu_backbone"):
        c.model.features = (16, 32, 64, 128)
    apply_backbone_variant(c, variant)


def apply_backbone_variant(c, variant: str) -> None:
    """cpu_backbone: the frozen pretrained EfficientNet-Lite0 encoder feeds the decoder."""
    if variant == "cpu_backbone":
        c.model.backbone = "efficientnet_lite0"
        c.model.backbone_width = 32


def demo_recipe(c) -> None:
    """An honest colorizer from six photos (measured in docs/results.md): trained on the
    demo alone, the plain recipe paints the demo's orange over every unseen photo.

    L1 predicts the median colour, which stays nearer gray than MSE's mean where the
    model is unsure; the output conv starts at zero (gray), not at noise; mirroring a
    (red <-> green) in half the images leaves a ~ 0, since six mostly orange photos cannot
    tell red things from green ones, while b (yellow <-> blue: sunlit vs sky and shade) is
    learnt; colours at 30-100% of their chroma make it claim about two thirds of what it
    saw. On BSDS500 photos it never saw this beats gray in CIEDE2000 and LPIPS."""
    c.loss = "l1"
    c.model.zero_output = True
    c.data.mirror_a = 0.5
    c.data.min_chroma_scale = 0.3


def get_config(variant: str = ""):
    c = base_config(variant)
    c.model.name = "unet"
    c.model.features = (32, 64, 128, 256)  # widths per level
    c.model.norm = "batch"  # batch | group | instance | none
    c.loss = "mse"  # mse | l1 | huber
    # > 0: rare (saturated) colours weigh more in the loss, 0.5 as in Zhang et al. 2016
    # (colorjax/objectives/rebalance.py); 0 = plain per-pixel loss.
    c.loss_rebalance = 0.0
    c.model.zero_output = False  # True: the output conv starts at zero (predicts gray)
    add_backbone_fields(c)
    apply_variant(c, variant)
    if variant in ("cpu", "cpu_backbone"):
        demo_recipe(c)
    return c
