"""colorjax: train, evaluate, compare and serve deep image colorizers in JAX/Flax."""

from colorjax.version import __version__

# Importing colorjax changes no process-wide setting: the programs (`python -m colorjax.X`,
# benchmarks, tests) choose XLA:CPU's convolutions themselves (xla_cpu.configure_program).

__all__ = ["Colorizer", "Hint", "__version__"]


def __getattr__(name):
    # `colorjax.Colorizer` (and `Hint`) are imported on first use, so `import colorjax` stays light
    # (no JAX, no model code) for tools that only want the version or a submodule.
    if name == "Colorizer":
        from colorjax.inference.colorizer import Colorizer
        return Colorizer
    if name == "Hint":
        from colorjax.hints import Hint
        return Hint
    raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
