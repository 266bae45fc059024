"""UNet-GAN (pix2pix, Isola et al. 2017): UNet generator, 70x70 PatchGAN judging (L, ab),
G loss = BCE adversarial + 100 * L1, Adam(2e-4, b1=0.5) for both networks."""

from configs import default, gan


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "unetgan"
    gan.add_adversarial_fields(c, variant)
    c.model.generator = "unet"
    return c
