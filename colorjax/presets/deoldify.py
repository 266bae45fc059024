"""DeOldify's generators (jantic/DeOldify, MIT): fastai's dynamic U-Net on a ResNet body
with self-attention, its output's colour joined with the photo's own luminance
(colorjax/models/deoldify.py, colorjax/objectives/deoldify.py).

Convert a published generator once,

    python -m colorjax.convert --from=deoldify_stable --weights=ColorizeStable_gen.pth \
        --output=exports/deoldify_stable

(`--from=deoldify_artistic` for ColorizeArtistic_gen.pth, `deoldify_video` for
ColorizeVideo_gen.pth), then colorize with it; `--size` is render_factor x 16.

Variants: "" and "stable" (DynamicUnetWide on ResNet-101, render_factor 35 = 560 px, as
`get_stable_image_colorizer`), "artistic" (DynamicUnetDeep on ResNet-34, render_factor
35), "video" (the wide network at render_factor 21 = 336 px, `get_stable_video_colorizer`),
"cpu" and "artistic_cpu" (fine-tuning on a CPU: 64 px, batch 8, 300 steps).

Training uses the authors' FeatureLoss (deoldify/loss.py): L1 (on ab here) plus the VGG16
feature term weighted 20, 70, 10 on the three deepest taps (colorjax's VGG16 in place of
their vgg16_bn; `config.loss_terms`). Their GAN phase is not reproduced;
`--config.loss_terms.gan_weight=1.5` adds colorjax's PatchGAN term with their generator
weight.
"""

from colorjax.presets import default

VARIANTS = {"": "DeOldify stable: the wide ResNet-101 generator, render_factor 35 (560 px)",
            "stable": "the same as ''",
            "artistic": "the deep ResNet-34 generator, render_factor 35 (560 px)",
            "video": "the wide generator at the video colorizer's render_factor 21 (336 px)",
            "cpu": "fine-tuning the wide generator on a CPU: 64 px, batch 8, 300 steps",
            "artistic_cpu": "fine-tuning the deep generator on a CPU: 64 px, batch 8, 300 steps"}
RENDER_FACTORS = {"": 35, "stable": 35, "artistic": 35, "video": 21}  # deoldify/visualize.py


def get_config(variant: str = ""):
    if variant not in VARIANTS:
        raise ValueError(f"unknown config variant {variant!r}; allowed: "
                         + ", ".join(f"{v!r} ({what})" for v, what in VARIANTS.items()))
    cpu = variant.endswith("cpu")
    c = default.get_config("cpu" if cpu else "")
    c.precision = default.PUBLISHED_PRECISION  # the authors' float32 (default.py)
    c.model.name = "deoldify"
    c.model.arch = "deep" if variant.startswith("artistic") else "wide"
    c.model.backbone = "none"
    c.model.freeze_norm = False  # True: keep BatchNorm's running statistics in training
    c.model.hint_propagation = False  # a hint-free network
    c.data.image_size = 64 if cpu else 16 * RENDER_FACTORS[variant]  # render_factor * 16
    # DeOldify's generator is trained with FeatureLoss (deoldify/loss.py; the training
    # notebooks' gen_loss): an L1 pixel term (on its RGB; colorjax's is on ab), plus L1 of
    # vgg16_bn's relu3_3, relu4_3, relu5_3 weighted 20, 70, 10, here colorjax's VGG16's
    # (colorjax/objectives/loss_terms.py).
    c.loss = "l1"
    c.loss_rebalance = 0.0
    # Its GAN phase (GANLearner, weights_gen=(1.0, 1.5) stable, (1.0, 2.0) artistic, a
    # spectral-norm critic) is off: --config.loss_terms.gan_weight=1.5 adds colorjax's
    # PatchGAN term instead.
    default.add_loss_terms(c, perceptual_weight=1.0,
                           perceptual_layer_weights=(0.0, 0.0, 20.0, 70.0, 10.0))
    c.optimizer.learning_rate = 1e-5  # fine-tuning a trained network: small steps
    return c
