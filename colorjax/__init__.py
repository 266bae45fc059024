"""colorjax: train, evaluate, compare and serve deep image colorizers in JAX/Flax."""

from importlib import metadata as _metadata

try:  # one source of truth: pyproject.toml, as installed
    __version__ = _metadata.version("colorjax")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = ["Colorizer", "__version__"]


def __getattr__(name):
    # `colorjax.Colorizer` is imported on first use, so `import colorjax` stays light
    # (no JAX, no model code) for tools that only want the version or a submodule.
    if name == "Colorizer":
        from colorjax.colorize import Colorizer
        return Colorizer
    raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
