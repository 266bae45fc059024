"""Training: the loop, checkpoints, evaluation, metric writers, export, warm starts, config
validation, a run's saved config, the end-of-run summary."""
