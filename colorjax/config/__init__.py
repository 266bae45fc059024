"""Configs: loading the presets, dotted fields, validation with structured errors, the model registry, a run's saved config."""
