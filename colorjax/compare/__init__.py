"""Comparing models on one table (`python -m colorjax.compare`)."""
