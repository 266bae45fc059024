"""ResNet-18-encoder regression colorizer (MSE on ab)."""

from configs import default


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "resnet"
    c.model.width = 64  # width of the first stage
    c.model.norm = "batch"  # batch | group | instance | none
    c.loss = "mse"  # mse | l1 | huber
    if variant == "cpu":
        c.model.width = 32
    return c
