"""Deep Koalarization regression colorizer (Baldassarre et al. 2017): an encoder of L fused
with a frozen EfficientNet-Lite0's embedding of the gray photo, Huber loss on ab."""

from configs import default


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "fusion"
    c.model.features = (64, 128, 256, 512)  # encoder widths; the paper's 64-128-256-512
    c.model.norm = "batch"  # batch | group | instance | none
    c.model.fusion_width = 256  # encoder output and fusion layer width (the paper's 256)
    c.model.embed_size = 224  # side of the gray photo fed to the classifier (its native size)
    # The seed project found Huber better than MSE for this network.
    c.loss = "huber"  # mse | l1 | huber
    # > 0: rare (saturated) colours weigh more in the loss, 0.5 as in Zhang et al. 2016
    # (colorjax/objectives/rebalance.py); 0 = plain per-pixel loss.
    c.loss_rebalance = 0.0
    if variant == "cpu":
        c.model.features = (16, 32, 64, 128)
        c.model.fusion_width = 64
        # The classifier's forward pass is most of a CPU step at 224 px: at 128 px a step
        # (64 px crops, batch 8, 2 cores) took ~0.55 s instead of ~1.15 s.
        c.model.embed_size = 128
    return c
