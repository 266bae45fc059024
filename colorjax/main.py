"""Entry point: `python -m colorjax.main --config=configs/unet.py --workdir=runs/unet`.

Modes: train (resumes from the workdir's latest checkpoint), eval (metrics table and grids
for a checkpoint), export (an inference artifact for `colorjax.Colorizer`, by default in
`workdir/export/step_<N>`; `--config.eval.step` picks the checkpoint). Any config field
can be overridden: `--config.batch_size=32`.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:variant]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "export"], "What to do.")
flags.DEFINE_string("export_dir", None,
                    "--mode=export: where to write the export (default: workdir/export/step_<N>).")
flags.DEFINE_string("compilation_cache", None,
                    "JAX persistent compilation cache directory ('none' disables; default "
                    "$COLORJAX_COMPILATION_CACHE or ~/.cache/colorjax/jax_compilation_cache).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TFDS and orbax log every file they open at INFO; colorjax reports progress itself.
    logging.set_verbosity(logging.WARNING)
    if FLAGS.mode == "export":
        # Only the checkpoint and the objective: no data pipeline, no training loop. It
        # reads one checkpoint and writes one directory, so in a multi-process launch
        # process 0 does it alone, as a single process, and the others have nothing to do.
        from colorjax import parallel
        if parallel.launched_process_id() != 0:
            return
        from colorjax.export import ExportError, export_checkpoint
        from colorjax.run_config import overridden_fields
        try:
            path = export_checkpoint(FLAGS.config, FLAGS.workdir, FLAGS.export_dir,
                                     overridden=overridden_fields(sys.argv))
        except (ExportError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")  # a user's mistake: the message, not a traceback
        print(f"exported to {path}", flush=True)
        return
    from colorjax import parallel, run_config, runtime, train
    from colorjax.checkpoint import DamagedCheckpointError

    parallel.initialize_distributed()
    runtime.enable_compilation_cache(FLAGS.compilation_cache)
    try:
        if FLAGS.mode == "train":
            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        elif FLAGS.mode == "eval":
            # The run's saved config, with only the fields given on the command line.
            train.evaluate_checkpoint(FLAGS.config, FLAGS.workdir,
                                      overridden=run_config.overridden_fields(sys.argv))
    except (DamagedCheckpointError, train.NonFiniteLossError, run_config.RunConfigError,
            FileNotFoundError) as e:
        sys.exit(f"error: {e}")  # what went wrong and what to do: no traceback


if __name__ == "__main__":
    app.run(main)
