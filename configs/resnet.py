"""ResNet-18-encoder regression colorizer (MSE on ab)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # configs import their shared defaults
import default  # noqa: E402


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "resnet"
    if variant == "cpu":
        c.model.width = 32
    return c
