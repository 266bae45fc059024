"""colorjax: train, evaluate, compare and serve deep image colorizers in JAX/Flax."""

__version__ = "0.1.0"
