"""Deep Koalarization regression colorizer (Baldassarre et al. 2017): an encoder of L fused
with a frozen EfficientNet-Lite0's embedding of the gray photo, Huber loss on ab."""

from colorjax.presets import default


VARIANTS = {"": "GPU-sized",
            "cpu": "CPU-sized: small widths and batches, minutes on a laptop",
            "cpu_taps": "cpu with a 16x16 bottleneck and the classifier's feature maps fused"}


def get_config(variant: str = ""):
    default.check_variant(variant, VARIANTS)
    c = default.get_config("cpu" if variant == "cpu_taps" else variant)
    c.model.name = "fusion"
    c.model.features = (64, 128, 256, 512)  # encoder widths; the paper's 64-128-256-512
    c.model.norm = "batch"  # batch | group | instance | none
    c.model.fusion_width = 256  # encoder output and fusion layer width (the paper's 256)
    c.model.embed_size = 224  # side of the gray photo fed to the classifier (its native size)
    # The paper fuses the classifier's global embedding alone: (). Indices 0-4 of its feature
    # taps (strides 2, 4, 8, 16, 32 of embed_size) add those maps to the fusion layer too,
    # each projected to fusion_tap_width channels and resized to the bottleneck.
    c.model.fusion_taps = ()
    c.model.fusion_tap_width = 32
    # The seed project found Huber better than MSE for this network.
    c.loss = "huber"  # mse | l1 | huber
    # > 0: rare (saturated) colours weigh more in the loss, 0.5 as in Zhang et al. 2016
    # (colorjax/objectives/rebalance.py); 0 = plain per-pixel loss.
    c.loss_rebalance = 0.0
    if variant in ("cpu", "cpu_taps"):
        c.model.features = (16, 32, 64, 128)
        c.model.fusion_width = 64
        # The classifier's forward pass is most of a CPU step at 224 px: at 128 px a step
        # (64 px crops, batch 8, 2 cores) took ~0.55 s instead of ~1.15 s.
        c.model.embed_size = 128
    if variant == "cpu_taps":
        # The CPU recipe of docs/results.md (issue 20): at 64 px the paper's three halvings
        # leave an 8x8 bottleneck, so this keeps two (16x16), and it fuses the classifier's
        # stride-8 and stride-16 maps (16x16 and 8x8 of its 128 px input) beside the
        # embedding: where things are, not only what the photo shows.
        c.model.features = (32, 64, 128)
        c.model.fusion_width = 128
        c.model.embed_size = 128
        c.model.fusion_taps = (2, 3)
        c.loss = "l1"
    return c
