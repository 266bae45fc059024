"""UNet regression colorizer (MSE on ab)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # configs import their shared defaults
import default  # noqa: E402


def get_config(variant: str = ""):
    c = default.get_config(variant)
    c.model.name = "unet"
    if variant == "cpu":
        c.model.features = (16, 32, 64, 128)
    return c
