"""Entry point: `python -m colorjax.main --config=configs/unet.py --workdir=runs/unet`.

Modes: train (resumes from the workdir's latest checkpoint), eval (metrics table and grids
for a checkpoint). Any config field can be overridden: `--config.batch_size=32`.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:variant]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "What to do.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TFDS and orbax log every file they open at INFO; colorjax reports progress itself.
    logging.set_verbosity(logging.WARNING)
    from colorjax import parallel, train

    parallel.initialize_distributed()
    if FLAGS.mode == "train":
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    elif FLAGS.mode == "eval":
        train.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
