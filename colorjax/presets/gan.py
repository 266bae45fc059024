"""Plain GAN colorizer, as in the original project: encoder-decoder generator without skip
connections, convolutional discriminator, binary cross-entropy (with logits) for both.

`add_adversarial_fields` holds what every adversarial config shares (unetgan,
pix2pix_resnet and wgan import it from here).
"""

import ml_collections

from colorjax.presets import default

VARIANTS = default.VARIANTS  # the shared ones: '' (GPU-sized) and 'cpu'


def add_backbone_fields(c: ml_collections.ConfigDict) -> None:
    """`config.model.backbone*` of the GAN generators and VAE decoders."""
    # none | vgg16 (the LPIPS VGG16) | efficientnet_lite0: a pretrained ImageNet network reads
    # the gray image; its feature maps feed G's decoder skips (the encoder-decoder's
    # bottleneck) or the VAE decoder. E.g. on a CPU:
    #   --config.model.backbone=efficientnet_lite0 --config.model.backbone_width=32
    c.model.backbone = "none"
    c.model.backbone_width = 64  # channels each backbone tap is projected to
    # False: frozen; True: fine-tuned (G's or the decoder's params) at its own peak rate.
    c.model.backbone_trainable = False
    c.model.backbone_learning_rate = 1e-5


def add_adversarial_fields(c: ml_collections.ConfigDict, variant: str) -> None:
    """config.adversarial, config.disc_optimizer, pix2pix optimizers; CPU-sized widths."""
    c.model.generator = "unet"  # encoder_decoder | unet | resnet_unet | residual_unet
    c.model.features = (32, 64, 128, 256)  # generator widths per level
    c.model.norm = "batch"  # generator: batch | group | instance | none
    add_backbone_fields(c)
    c.adversarial = ml_collections.ConfigDict(dict(
        loss="bce",  # bce | wgan_gp
        adv_weight=1.0,  # weight of G's adversarial term
        l1_weight=100.0,  # lambda of the L1 term (Isola et al. 2017)
        gp_weight=10.0,  # WGAN-GP lambda (Gulrajani et al. 2017)
        n_critic=1,  # D updates per G update
        nogan_steps=0,  # steps of generator-only (NoGAN) training first; 0 = none
        perceptual_weight=0.0,  # weight of the VGG16 feature loss; 0 = off
        # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: DeOldify's FeatureLoss weights 20, 70,
        # 10 on the three deepest taps.
        perceptual_layer_weights=(0.0, 0.0, 20.0, 70.0, 10.0),
        discriminator="patchgan",  # patchgan | conv
        disc_features=64,  # width of D's first layer
        disc_layers=3,  # strided layers; a PatchGAN with 3 sees 70x70 patches
        disc_norm="batch",  # batch | group | instance | none
    ))
    # pix2pix: Adam(2e-4, b1=0.5) for both networks, no warm-up, no clipping.
    c.optimizer.update(dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999,
                            schedule="constant", warmup_steps=0, grad_clip_norm=0.0))
    # D's own optimizer, same fields. Its schedule and warm-up count D updates: n_critic per
    # step, none during the NoGAN phase.
    c.disc_optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())
    if variant == "cpu":
        c.model.features = (16, 32, 64, 128)
        c.adversarial.disc_features = 16
        # A 3-layer PatchGAN needs >= 24 px images (discriminators.patchgan_min_size).
        if int(c.data.get("image_size", 32)) < 24:
            c.adversarial.disc_layers = 2


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "gan"
    add_adversarial_fields(c, variant)
    c.model.generator = "encoder_decoder"
    c.adversarial.discriminator = "conv"
    c.adversarial.disc_layers = 4
    return c
