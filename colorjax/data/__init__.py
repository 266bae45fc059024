"""Input data for colorjax: sources (photo folders, the built-in demo, TFDS catalog names)
prepared as TFDS array_record datasets, and the grain pipeline that turns them into
``{'l', 'ab'}`` batches. See colorjax/data/README.md.
"""

from colorjax.data.config import default_data_config
from colorjax.data.demo import prepare_demo
from colorjax.data.folder import PrepareReport, prepare_folder
from colorjax.data.pipeline import (
    EvalIterable,
    TrainIterator,
    create_eval_iterator,
    create_train_iterator,
    decode_state,
    encode_state,
)
from colorjax.data.sources import num_examples, validate_data_config

__all__ = [
    "EvalIterable",
    "PrepareReport",
    "TrainIterator",
    "create_eval_iterator",
    "create_train_iterator",
    "decode_state",
    "default_data_config",
    "encode_state",
    "num_examples",
    "prepare_demo",
    "prepare_folder",
    "validate_data_config",
]
