"""The bottom of the house: `ConfigError` and the field checks (`checks`), dotted field
names (`fields`), and the model registry (`registry`). Loading the presets is
`colorjax.presets`; validating a run's config and its saved config, `colorjax.training`."""
