"""Diffusion colorizer, DDPM ancestral sampling (1000 steps): the project's headline example.

`configs/unetddim.py` trains exactly this network in exactly this way and differs only in
the sampler. Run: `python -m colorjax.main --config=configs/unetddpm.py --workdir=runs/ddpm`.

Variants: `:cpu` (minutes on a CPU, 32 px crops, no backbone) and `:cpu64`, the CPU recipe of
docs/results.md that beats the gray baseline on bsds500/val at 64 px (3,000 steps, about
100 minutes on 2 CPU cores).
"""

import ml_collections

from colorjax.presets import default


VARIANTS = {"": "GPU-sized", "cpu": "minutes on a CPU: 32 px crops, no backbone",
            "cpu64": "the measured 64 px CPU recipe that beats gray on bsds500 (docs/results.md)"}


def get_config(variant: str = ""):
    default.check_variant(variant, VARIANTS)
    c = default.get_config("cpu" if variant == "cpu64" else variant)
    c.model.name = "unetddpm"
    # Ho et al. 2020's 32-64 px UNet, at 64 px: levels at 64, 32, 16, 8 px, attention at 16 and 8.
    c.model.features = (64, 128, 256, 256)
    c.model.attention_levels = (2, 3)  # level indices, 0 = full resolution
    c.model.num_res_blocks = 2
    c.model.dropout = 0.1
    # Frozen ImageNet features of L as extra conditioning: none | vgg16 (the LPIPS VGG16,
    # hypercolumns as in Larsson et al. 2016); see colorjax/models/backbone.py. Measured on
    # CPU (docs/results.md): CIEDE2000 13.70 -> 12.68 on bsds500/val after 1,000 steps each.
    c.model.backbone = "vgg16"
    c.model.backbone_width = 64  # channels each backbone tap is projected to
    c.model.backbone_trainable = False  # True: fine-tuned at its own peak rate
    c.model.backbone_learning_rate = 1e-5
    c.diffusion = ml_collections.ConfigDict(dict(
        schedule="cosine",  # linear (Ho et al. 2020) | cosine (Nichol and Dhariwal 2021)
        timesteps=1000,
        prediction="eps",  # eps | v (Salimans and Ho 2022)
        loss="mse",  # mse | l1, on the prediction
        timestep_buckets=4,  # logged loss_t0..loss_t3: loss per quarter of the timesteps
        data_scale=4.0,  # x_0 = ab·4 (std ~0.5); see colorjax/objectives/diffusion.py
    ))
    c.sampler = ml_collections.ConfigDict(dict(
        name="ddpm",  # ddpm (all T steps) | ddim (sampler.steps, sampler.eta)
        steps=50,  # DDIM steps (the original project's); DDPM always runs T
        eta=0.0,
        # Noise scale of x_T and of each stochastic step: 1 = samples of the model's
        # distribution; below 1, less colourful and closer to its most likely colouring.
        temperature=1.0,
    ))
    c.ema_decay = 0.999
    c.batch_size = 64
    c.num_train_steps = 100_000
    c.optimizer.warmup_steps = 1000
    c.optimizer.schedule = "constant"  # Ho et al. 2020: constant 2e-4 after warm-up
    c.eval.batch_size = 64

    if variant in ("cpu", "cpu64"):
        c.model.backbone = "none"  # :cpu's measurements (docs/results.md) predate the backbone
        c.model.features = (32, 64, 128)
        c.model.attention_levels = (2,)
        c.model.num_res_blocks = 1
        c.model.dropout = 0.0
        # v-prediction for short CPU runs: ε-prediction's x̂_0 = (x_t - sqrt(1-ᾱ) ε̂)/sqrt(ᾱ)
        # amplifies a young network's errors at high noise into saturated colour blotches.
        # Measured (docs/results.md, 525 steps, bsds500/val at 64 px, DDIM-50): CIEDE2000
        # 27.9 with ε, 13.4 with v; colourfulness 104 with ε, 31.9 with v (truth 34.9).
        c.diffusion.prediction = "v"
        c.data.image_size = 32
        c.batch_size = 16
        c.num_train_steps = 2000
        c.eval_every = 1000
        c.checkpoint_every = 1000
        c.eval.num_examples = 32
        c.eval.batch_size = 16
        c.optimizer.learning_rate = 5e-4
        c.optimizer.warmup_steps = 100
        c.ema_decay = 0.995
    if variant == "cpu64":
        # docs/results.md, "Fourth session": 64 px crops of 64 px photos (the evaluation size),
        # 4 levels, frozen VGG16 features, 3,000 steps. At temperature 0.85 the DDIM-50
        # samples beat gray in CIEDE2000 and LPIPS; at 1 they beat it in LPIPS only.
        c.data.image_size = 64
        c.data.resize_shorter_to = 64
        c.model.features = (32, 64, 128, 128)
        c.model.attention_levels = (3,)
        c.model.backbone = "vgg16"
        c.sampler.temperature = 0.85
        c.num_train_steps = 3000
        c.checkpoint_every = 250
        c.eval_every = 1000
    return c
