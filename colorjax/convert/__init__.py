"""Published colorizers' checkpoints -> colorjax exports.

    python -m colorjax.convert --from=eccv16|siggraph17 --weights=FILE.pth --output=DIR

`zhang.py` reads Zhang et al.'s released PyTorch state_dicts (richzhang/colorization) with
colorjax's restricted reader (no pickled code runs), checks them tensor by tensor against
the authors' architecture, maps them onto the Flax networks of `colorjax.models.zhang` and
writes an ordinary export (`colorjax.training.export.write_export`): `Colorizer.load`,
`colorjax.colorize`, `colorjax.serve`, videos, `compare --exports` and
`--config.init_from` use it like any other. `__main__.py` is the command line.
"""
