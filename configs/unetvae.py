"""Conditional VAE with a UNet decoder: the skips carry the structure of L, the latent z
(bottleneck + FiLM on every decoder level) only the colour choice. Loss = MSE + beta * KL."""

from configs import basicvae, default


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "unetvae"
    basicvae.add_vae_fields(c, variant)
    return c
