"""Input data for colorjax: sources (photo folders, the built-in demo, TFDS catalog names)
prepared as TFDS array_record datasets, and the grain pipeline that turns them into
``{'l', 'ab'}`` batches. See colorjax/data/README.md.
"""

import importlib

# Where each name lives. Loaded on first use (PEP 562), so that a config file, which needs
# `default_data_config` alone, does not import JAX, TFDS and grain: a config error on the
# command line is then reported before them (1.5 s, not 2.1 s).
_HOME = {
    "default_data_config": "config",
    "prepare_demo": "demo",
    "PrepareReport": "folder", "prepare_folder": "folder",
    "EvalIterable": "pipeline", "TrainIterator": "pipeline", "create_eval_iterator": "pipeline",
    "create_train_iterator": "pipeline", "decode_state": "pipeline", "encode_state": "pipeline",
    "num_examples": "sources", "validate_data_config": "sources",
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'colorjax.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"colorjax.data.{_HOME[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOME)
