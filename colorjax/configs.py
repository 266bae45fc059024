"""Load a config file (`configs/<name>.py[:variant]`) as main.py does, for tests and scripts."""

from __future__ import annotations

import importlib.util
import pathlib

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load_config(name_or_path: str, variant: str = ""):
    """`load_config("unet", "cpu")` or `load_config("configs/unet.py:cpu")`."""
    if ":" in name_or_path and not variant:
        name_or_path, variant = name_or_path.split(":", 1)
    path = pathlib.Path(name_or_path)
    if path.suffix != ".py":
        path = CONFIG_DIR / f"{name_or_path}.py"
    if not path.is_file():
        available = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem != "default")
        raise FileNotFoundError(f"no config file {path}; available: {available}")
    spec = importlib.util.spec_from_file_location(f"colorjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()
