"""Conditional VAE with a UNet decoder: the skips carry the structure of L, the latent z
(bottleneck + FiLM on every decoder level) only the colour choice. Loss = MSE + beta * KL."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # configs import their shared defaults
import basicvae  # noqa: E402
import default  # noqa: E402


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "unetvae"
    basicvae.add_vae_fields(c, variant)
    return c
