"""Zhang, Zhu, Isola, Geng, Lin, Yu and Efros 2017, "Real-Time User-Guided Image
Colorization with Learned Deep Priors" (SIGGRAPH), the network of the authors' PyTorch
release (richzhang/colorization, `colorizers/siggraph17.py`): L, hint ab and a hint mask in,
ab out (colorjax/models/zhang.py, colorjax/objectives/zhang.py). Always a hint model:
`colorize --hints=FILE.json` and the page's points steer it; without hints it colorizes on
its own.

Start from the published weights: convert them once,

    python -m colorjax.convert --from=siggraph17 --weights=siggraph17-df00044c.pth \
        --output=exports/siggraph17

then colorize with that export, or fine-tune on your own photos from it (hints are drawn
from the truth in training, as for every colorjax hint model):

    python -m colorjax.main --config=configs/siggraph17.py:cpu --workdir=runs/sig_ft \
        --config.init_from=exports/siggraph17 --config.data.folder=MY_PHOTOS

Variants: "" (the release's 256 px, batch 16), `:cpu` (64 px, batch 8, 300 steps).
"""

from colorjax.presets import default

VARIANTS = {"": "the release's working size, 256 px, batch 16",
            "cpu": "fine-tuning on a CPU: 64 px crops, batch 8, 300 steps"}


def get_config(variant: str = ""):
    if variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; allowed: "
                         + ", ".join(f"{v!r} ({what})" for v, what in VARIANTS.items()))
    c = default.get_config(variant)
    c.model.name = "siggraph17"
    c.model.width = 64  # the release's; a converted export needs it
    c.model.backbone = "none"
    c.model.freeze_norm = False  # True: keep BatchNorm's running statistics in training
    c.model.hints = True  # the network reads L, hint ab and mask
    # The release reads the sparse planes alone (4 input planes); True adds colorjax's
    # propagated hints (7 planes), a different first layer than the published one.
    c.model.hint_propagation = False
    c.data.image_size = 256  # the authors' working size
    # The paper's regression loss is a smooth L1 (Huber); colorjax's huber is quadratic
    # below 10 Lab units of ab.
    c.loss = "huber"
    c.loss_rebalance = 0.0
    c.optimizer.learning_rate = 1e-5  # fine-tuning a trained network: small steps
    if variant == "cpu":
        c.data.image_size = 64
    return c
