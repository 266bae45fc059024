"""colorjax: train, evaluate, compare and serve deep image colorizers in JAX/Flax."""

from colorjax import xla_cpu as _xla_cpu
from colorjax.version import __version__

# Before anything starts JAX: Eigen convolutions on the CPU, faster than XLA's default
# YNNPACK ones on the machines measured (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
_xla_cpu.configure()

__all__ = ["Colorizer", "Hint", "__version__"]


def __getattr__(name):
    # `colorjax.Colorizer` (and `Hint`) are imported on first use, so `import colorjax` stays light
    # (no JAX, no model code) for tools that only want the version or a submodule.
    if name == "Colorizer":
        from colorjax.colorize import Colorizer
        return Colorizer
    if name == "Hint":
        from colorjax.hints import Hint
        return Hint
    raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
