"""Load a config (`configs/<name>.py[:variant]`) as main.py does, for tests and scripts.

A name (`"unet"`) imports the installed module `configs.unet`; a path to a `.py` file is
loaded from that file, as `--config=<path>` does (the file itself imports `configs.*`).
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib

import configs

CONFIG_DIR = pathlib.Path(configs.__file__).resolve().parent


def available_configs() -> list[str]:
    """The names of the model configs (every module in configs/ but the shared defaults)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py")
                  if p.stem not in ("default", "__init__"))


def load_config(name_or_path: str, variant: str = ""):
    """`load_config("unet", "cpu")` or `load_config("configs/unet.py:cpu")`."""
    if ":" in name_or_path and not variant:
        name_or_path, variant = name_or_path.split(":", 1)
    path = pathlib.Path(name_or_path)
    if path.suffix == ".py":
        if not path.is_file():
            raise FileNotFoundError(f"no config file {path}; available: {available_configs()}")
        spec = importlib.util.spec_from_file_location(f"colorjax_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        if name_or_path not in available_configs():
            raise FileNotFoundError(f"no config file {CONFIG_DIR / (name_or_path + '.py')}; "
                                    f"available: {available_configs()}")
        module = importlib.import_module(f"configs.{name_or_path}")
    return module.get_config(variant) if variant else module.get_config()
