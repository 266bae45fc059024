"""What every colorjax model reads. Model configs start from `get_config()` here and add
their family's fields (`model.features`, `loss`, `sampler`, ...) in their own file.

Override any field on the command line: `--config.batch_size=32`. Variants are passed
after a colon: `--config=configs/unet.py:cpu` gives the CPU-sized run.
"""

import ml_collections

from colorjax.data import default_data_config


# Every variant a config file accepts (`--config=configs/<model>.py:<variant>`), with one
# line on what it is: the errors and `python -m colorjax.main --list_configs` read them.
# A model config declares its own VARIANTS (or this one's, when it adds none).
VARIANTS = {"": "GPU-sized", "cpu": "CPU-sized: small batches, a run of minutes on a laptop"}


def check_variant(variant: str, variants: dict) -> None:
    """ValueError naming the allowed variants (and what each is) unless `variant` is one."""
    if variant not in variants:
        allowed = ", ".join(f"{v!r} ({what})" for v, what in variants.items())
        raise ValueError(f"unknown config variant {variant!r}; allowed: {allowed}")


# Zhang et al.'s released networks (eccv16.py, siggraph17.py) share these variants.
RELEASE_VARIANTS = {"": "the release's working size, 256 px, batch 16",
                    "cpu": "fine-tuning on a CPU: 64 px crops, batch 8, 300 steps"}


def release_config(name: str, variant: str) -> ml_collections.ConfigDict:
    """The fields Zhang et al.'s released networks share: the release's width, no
    backbone, BatchNorm trained as the authors did, their working size (256 px; 64 on CPU)."""
    check_variant(variant, RELEASE_VARIANTS)
    c = get_config(variant)
    c.model.name = name
    c.model.width = 64  # the release's; a converted export needs it
    c.model.backbone = "none"
    # True: BatchNorm keeps its (published) running statistics while fine-tuning, which
    # suits small batches; False: batch statistics, as the authors trained.
    c.model.freeze_norm = False
    c.data.image_size = 64 if variant == "cpu" else 256  # the authors' (util.preprocess_img)
    c.precision = PUBLISHED_PRECISION
    return c


# A converted published network computes as its authors' code does (float32), so that its
# photos are theirs on every CPU: "auto" would choose bfloat16_convs on CPUs with AMX.
PUBLISHED_PRECISION = "float32"


def add_loss_terms(c: ml_collections.ConfigDict, **weights) -> None:
    """`config.loss_terms` (colorjax/objectives/loss_terms.py: the regression family's terms
    beside its per-pixel loss; the published DDColor and DeOldify set their authors'),
    `weights` over these defaults (all off), and `config.disc_optimizer` for the GAN term's
    discriminator."""
    c.loss_terms = ml_collections.ConfigDict(dict(
        pixel_weight=1.0,  # times the per-pixel loss (config.loss) on ab / 110
        perceptual_weight=0.0,  # VGG16 feature L1 on the Lab -> sRGB composite; 0 = off
        # on relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of colorjax's (LPIPS) VGG16
        perceptual_layer_weights=(0.0, 0.0, 20.0, 70.0, 10.0),
        colorfulness_weight=0.0,  # DDColor's colourfulness loss, mean over images; 0 = off
        target_enhance=1.0,  # the perceptual and GAN targets' colours pushed from gray
        gan_weight=0.0,  # BCE of a PatchGAN on (L, ab); 0 = off (no discriminator)
        disc_features=64, disc_layers=3, disc_norm="batch",  # that PatchGAN
    ))
    c.loss_terms.update(weights)
    c.disc_optimizer = ml_collections.ConfigDict(dict(
        name="adam", learning_rate=1e-4, b1=0.9, b2=0.99, weight_decay=0.0,
        schedule="constant", warmup_steps=0, end_lr_factor=1.0, grad_clip_norm=0.0))


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    check_variant(variant, VARIANTS)
    c = ml_collections.ConfigDict()
    c.seed = 8000  # the original projects' default seed
    c.model = ml_collections.ConfigDict(dict(name="unet"))  # the family's config adds fields
    # The module that trains model.name where it is not colorjax's: a family of your own
    # (its MODELS, OBJECTIVE, validate, downsample_factor; docs/architecture.md). "": ours.
    c.model.objective = ""
    # Colour hints (Zhang et al. 2017; colorjax/hints/__init__.py): the network also reads ab hint
    # planes and a mask, drawn from the truth in training; any family.
    c.model.hints = False
    # Hint models also read their hints spread along the image by an edge-aware
    # propagation (colorjax/hints/propagation.py); False: the sparse planes alone.
    c.model.hint_propagation = True
    c.batch_size = 16  # global, over all devices and processes
    c.num_train_steps = 20_000
    c.num_epochs = 0  # > 0 replaces num_train_steps with this many passes over the train split

    c.optimizer = ml_collections.ConfigDict(dict(
        name="adam",  # adam | adamw
        learning_rate=2e-4, b1=0.9, b2=0.999, weight_decay=1e-4,
        schedule="cosine",  # constant | cosine
        warmup_steps=200, end_lr_factor=0.05, grad_clip_norm=1.0,
    ))
    c.ema_decay = 0.0  # 0 disables the EMA copy of parameters
    # An export to start from instead of random weights ('' = none): fine-tune a converted
    # published model (python -m colorjax.convert) or any export of the same model
    # (colorjax/training/warm_start.py). A run resuming its own checkpoint ignores it.
    c.init_from = ""
    # Mixed precision: what networks compute in; parameters, optimizer state, losses and
    # checkpoints stay float32. auto | float32 | bfloat16 (the whole network; for GPUs) |
    # bfloat16_convs (convolutions and dense layers only, the rest float32: 1.4x faster
    # training on CPUs with AMX, docs/benchmarks.md; colorjax/models/conv_precision.py).
    # auto: bfloat16_convs on a CPU with AMX-BF16, float32 elsewhere (objectives/precision.py)
    c.precision = "auto"

    c.log_every = 50
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3

    c.eval = ml_collections.ConfigDict(dict(
        split="validation",
        num_examples=256,  # cap on evaluated images (0 = the whole split)
        batch_size=16,
        num_images=8,  # images in the sample grids
        step=-1,  # --mode=eval: which checkpoint (-1 = latest); the original's --weights
        lpips_net="alex",  # alex | vgg
        # Hint models: evaluate with this many hints from the truth (seeded; 0 = none,
        # the automatic colorization). Needs config.model.hints.
        num_hints=0,
    ))
    c.data = default_data_config()
    c.wandb = ml_collections.ConfigDict(dict(enabled=False, project="colorjax", entity=""))

    if variant == "cpu":
        apply_cpu_variant(c)
    return c


def apply_cpu_variant(c: ml_collections.ConfigDict) -> None:
    """A run that finishes in minutes on a laptop CPU."""
    c.batch_size = 8
    c.num_train_steps = 300
    c.log_every = 25
    c.eval_every = 150
    c.checkpoint_every = 150
    c.eval.num_examples = 32
    c.eval.batch_size = 8
    c.optimizer.warmup_steps = 20
