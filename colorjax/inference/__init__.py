"""Inference: the Colorizer, export loading, hints, the temporal stabiliser, output files."""
