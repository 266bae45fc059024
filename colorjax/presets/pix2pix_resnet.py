"""pix2pix with a ResNet encoder, trained first without the adversary (DeOldify's "NoGAN"):
for `nogan_steps` the generator alone learns 100 * L1 + a VGG16 feature loss on the Lab ->
RGB composites; then the PatchGAN joins (the feature loss stays, as in DeOldify)."""

from colorjax.presets import default, gan

VARIANTS = default.VARIANTS  # the shared ones: '' (GPU-sized) and 'cpu'


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "pix2pix_resnet"
    gan.add_adversarial_fields(c, variant)
    c.model.generator = "resnet_unet"
    # Half the run without the adversary; a reference, so --config.num_train_steps=N moves
    # the switch to N // 2 unless --config.adversarial.nogan_steps is given too.
    c.adversarial.nogan_steps = c.get_ref("num_train_steps") // 2
    # With DeOldify's layer weights the feature term of a gray (ab = 0) prediction is about
    # 4x the 100 * L1 term (measured on skimage photos); 0.25 makes them comparable.
    c.adversarial.perceptual_weight = 0.25
    return c
