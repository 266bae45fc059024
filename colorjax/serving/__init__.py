"""The upload server's parts; `python -m colorjax.serve` runs it (see colorjax/serve.py)."""
