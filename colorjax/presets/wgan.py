"""WGAN-GP colorizer: residual UNet generator, InstanceNorm PatchGAN critic, Wasserstein loss
with gradient penalty lambda = 10 and n_critic = 5 critic updates per generator update,
Adam(1e-4, b1=0, b2=0.9) (Gulrajani et al. 2017, Algorithm 1), plus 100 * L1."""

from colorjax.presets import default, gan

VARIANTS = default.VARIANTS  # the shared ones: '' (GPU-sized) and 'cpu'


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "wgan_gp"
    gan.add_adversarial_fields(c, variant)
    c.model.generator = "residual_unet"
    c.adversarial.update(dict(loss="wgan_gp", gp_weight=10.0, n_critic=5,
                              disc_norm="instance"))
    for opt in (c.optimizer, c.disc_optimizer):
        opt.update(dict(learning_rate=1e-4, b1=0.0, b2=0.9))
    if variant == "cpu":
        # Five critic updates, each with a double backward for the penalty, dominate a
        # step; a half-width critic makes it ~3x faster on a CPU.
        c.adversarial.disc_features = 8
    return c
