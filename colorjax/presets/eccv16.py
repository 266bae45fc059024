"""Zhang, Isola and Efros 2016, "Colorful Image Colorization" (ECCV), the network of the
authors' PyTorch release (richzhang/colorization, `colorizers/eccv16.py`): per-pixel logits
over 313 ab bins at 1/4 of the input, decoded by the annealed mean and upsampled x4
(colorjax/models/zhang.py, colorjax/objectives/zhang.py).

Start from the published weights: convert them once,

    python -m colorjax.convert --from=eccv16 --weights=colorization_release_v2-9b330a0b.pth \
        --output=exports/eccv16

then colorize with that export, or fine-tune on your own photos from it:

    python -m colorjax.main --config=configs/eccv16.py:cpu --workdir=runs/eccv16_ft \
        --config.init_from=exports/eccv16 --config.data.folder=MY_PHOTOS

Training uses the classification family's loss: the class-rebalanced soft cross-entropy
(the colour prior counted from your photos before step 1), as the paper trains it.
Variants: "" (the release's 256 px, batch 16), `:cpu` (64 px, batch 8, 300 steps).
"""

import ml_collections

from colorjax.color.ab_bins import PRIOR_MIX
from colorjax.presets import default

VARIANTS = default.RELEASE_VARIANTS


def get_config(variant: str = ""):
    c = default.release_config("eccv16", variant)
    c.model.hint_propagation = False  # a hint-free network (config.model.hints=False)
    c.classification = ml_collections.ConfigDict(dict(
        # 1 = the mean of the distribution, what the release's forward computes (and the
        # authors' demo shows); the paper's annealed mean 0.38 is more vivid. A runtime
        # field: colorize --temperature changes it.
        temperature=1.0,
        prior_mix=PRIOR_MIX,  # lambda of the rebalancing prior, the paper's 1/2
        prior_images=10_000,  # photos the colour prior is counted from (0 = all)
    ))
    # The paper's solver: Adam, 3e-5, betas (0.9, 0.99), weight decay 1e-3.
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-5
    c.optimizer.b2 = 0.99
    c.optimizer.weight_decay = 1e-3
    return c
