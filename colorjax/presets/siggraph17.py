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

VARIANTS = default.RELEASE_VARIANTS


def get_config(variant: str = ""):
    c = default.release_config("siggraph17", variant)
    c.model.hints = True  # the network reads L, hint ab and mask
    # The release reads the sparse planes alone (4 input planes); True adds colorjax's
    # propagated hints (7 planes), a different first layer than the published one.
    c.model.hint_propagation = False
    # The paper's regression loss is a smooth L1 (Huber); colorjax's huber is quadratic
    # below 10 Lab units of ab.
    c.loss = "huber"
    c.loss_rebalance = 0.0
    c.optimizer.learning_rate = 1e-5  # fine-tuning a trained network: small steps
    return c
