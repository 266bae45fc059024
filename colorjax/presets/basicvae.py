"""Conditional VAE, plain encoder-decoder decoder: q(z | L, ab) at training time,
p(ab | z, L) with z at the bottleneck (and FiLM on every decoder level) and the gray
image concatenated at full resolution before the head. Loss = MSE + beta * KL."""

import ml_collections

from colorjax.presets import default, gan

VARIANTS = default.VARIANTS  # the shared ones: '' (GPU-sized) and 'cpu'


def add_vae_fields(c, variant: str = "") -> None:
    """The fields both VAEs share (`unetvae.py` calls this too)."""
    c.model.features = (32, 64, 128, 256)  # decoder widths per level
    c.model.norm = "batch"  # encoder and decoder: batch | group | instance | none
    c.model.latent_dim = 256  # the original project's latent size
    c.model.encoder_features = (32, 64, 128, 256)  # posterior encoder, one stride-2 conv each
    c.model.condition = "film"  # bottleneck: z added there only | film: also FiLM per level
    gan.add_backbone_fields(c)  # model.backbone* (read by the decoder only)
    c.vae = ml_collections.ConfigDict(dict(
        beta=0.001,  # KL weight, the original's; KL summed over latent dims (not per pixel)
        kl_warmup_steps=0,  # > 0: beta ramps linearly from 0 over this many steps
        # How predict draws z: "zero" (the prior's mode: deterministic, the single most
        # likely colouring; what evaluation tables report) or "prior" (z ~ N(0, I): a
        # different plausible colouring per rng).
        sample_mode="zero",
    ))
    c.loss = "mse"  # reconstruction: mse | l1 | huber
    if variant == "cpu":
        c.model.features = (16, 32, 64, 128)
        c.model.encoder_features = (16, 32, 64, 128)


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "basicvae"
    add_vae_fields(c, variant)
    return c
