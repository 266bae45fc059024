"""colorjax's model configs, one module per model (`configs/unet.py`, ...), each with
`get_config(variant)`; `default.py` holds what every model shares.

Installed with colorjax (`pip install -e .`), so a config file loaded by path
(`--config=configs/unet.py:cpu`) imports the others as `from configs import default`.
"""
