"""UNet regression colorizer (MSE on ab)."""

from configs import default


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "unet"
    c.model.features = (32, 64, 128, 256)  # widths per level
    c.model.norm = "batch"  # batch | group | instance | none
    c.loss = "mse"  # mse | l1 | huber
    if variant == "cpu":
        c.model.features = (16, 32, 64, 128)
    return c
