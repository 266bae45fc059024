"""Training: the loop, checkpoints, evaluation, metric writers, export, warm starts, the end-of-run summary."""
