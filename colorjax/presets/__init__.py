"""colorjax's model configs, one module per model (`unet.py`, ...), each with
`get_config(variant)`; `default.py` holds what every model shares.

They live inside the package (installed as `colorjax.presets`, not as a generic top-level
`configs`), and import each other as `from colorjax.presets import default`. The checkout's
top-level `configs/` is a link to this folder, so `--config=configs/unet.py:cpu` works there;
elsewhere `python -m colorjax.main` reads `configs/<name>.py` as the installed preset.

Loading them (`load_config("unet", "cpu")` or `load_config("configs/unet.py:cpu")`, as
`python -m colorjax.main` does) and listing them (`catalog`, what `--list_configs` prints)
are the functions below; a path to a `.py` file is loaded from that file.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib


CONFIG_DIR = pathlib.Path(__file__).resolve().parent


def available_configs() -> list[str]:
    """The names of the model configs (every module in configs/ but the shared defaults)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py")
                  if p.stem not in ("default", "__init__"))


def variants(name: str) -> dict[str, str]:
    """{variant: what it is} of `configs/<name>.py`, from the file's own `VARIANTS` (a
    tuple of names is read as names without a description)."""
    declared = getattr(importlib.import_module(f"colorjax.presets.{name}"), "VARIANTS", {"": ""})
    return dict(declared) if isinstance(declared, dict) else {v: "" for v in declared}


def summary(name: str, width: int = 90) -> str:
    """One line on `configs/<name>.py`: its docstring's first paragraph up to the first
    ": " outside brackets (the model's name and source), at most `width` characters."""
    doc = importlib.import_module(f"colorjax.presets.{name}").__doc__ or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if depth == 0 and text.startswith(": ", i):
            text = text[:i]
            break
    text = text.rstrip(".")
    return text if len(text) <= width else text[:width - 3].rsplit(" ", 1)[0] + "..."


def catalog() -> list[tuple[str, str]]:
    """(--config value, one line on it) for every model config and each of its variants,
    read from the files in configs/: their docstrings and `VARIANTS`."""
    rows = []
    for name in available_configs():
        path = f"configs/{name}.py"
        rows.append((path, summary(name)))
        rows.extend((f"{path}:{v}", what) for v, what in variants(name).items() if v)
    return rows


def catalog_text() -> str:
    """`catalog()` as the lines `python -m colorjax.main --list_configs` prints."""
    rows = catalog()
    width = max(len(spec) for spec, _ in rows) + 2
    head = ["configs: --config=configs/<model>.py[:variant] (no variant: GPU-sized); any field",
            "can be overridden with --config.<field>=value"]
    return "\n".join([*head, *(f"  {spec.ljust(width)}{what}".rstrip() for spec, what in rows)])


def preset_path(path: str) -> str:
    """`path`, or for `configs/<name>.py` that is not a file here, the installed preset's
    file: the README's `--config=configs/unet.py` then works outside a checkout too."""
    p = pathlib.Path(path)
    if (not p.is_file() and p.parent.name == "configs" and p.suffix == ".py"
            and (CONFIG_DIR / p.name).is_file()):
        return str(CONFIG_DIR / p.name)
    return path


def load_config(name_or_path: str, variant: str = ""):
    """`load_config("unet", "cpu")` or `load_config("configs/unet.py:cpu")`."""
    if ":" in name_or_path and not variant:
        name_or_path, variant = name_or_path.split(":", 1)
    path = pathlib.Path(preset_path(name_or_path))
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
        module = importlib.import_module(f"colorjax.presets.{name_or_path}")
    return module.get_config(variant) if variant else module.get_config()
