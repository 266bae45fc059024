"""Train and compare several colorizers on the same images: `python -m colorjax.compare`.

    python -m colorjax.compare --configs=configs/unet.py:cpu,configs/unetgan.py:cpu \\
        --workdir=runs/compare --set=data.image_size=32 --set=num_train_steps=300
    python -m colorjax.compare --all --workdir=runs/compare          # every config's :cpu
    python -m colorjax.compare --all --workdir=runs/compare --eval_only \\
        --set=data.eval_folder=photos/   # the same runs, evaluated on other photos

Each model is trained in `DIR/<name>` (name: the config file's stem and variant, e.g.
`unet_cpu`) by the real CLI, `python -m colorjax.main --config=... --workdir=DIR/<name>
--config.<field>=<value>...` (one per `--set`), in a subprocess whose output goes to
`DIR/<name>/train.log`; a finished run is reused and an unfinished one resumes (the CLI
does both). Then, in this process, each run is restored (`checkpoint.restore_run`, with its
saved config and the `--set` fields that are runtime fields: data, eval, sampler, ...) and
predicts every image of the split its eval data config names, through the training loop's
Evaluator (`Evaluator.per_image`: its batches, hints and metrics); the per-image metrics
give the mean and a 95% percentile bootstrap interval (resampling images, seed 0, the same resamples for every
row). The gray baseline (ab = 0) is a row too. A model whose training or evaluation fails
is a row saying why; the exit status is nonzero only when every model failed.

Writes `DIR/compare.md`, `DIR/compare.json`, `DIR/compare_grid.png` (gray first, a row per
model, truth last) and `DIR/plots/<metric>.png` (each run's eval metrics against the step).

`--exports=DIR,...` adds exported models (`--mode=export`, or a published model converted by
`python -m colorjax.convert`) as rows, named `<dir> (export)`, evaluated on the same images
as the runs (the first run's eval data and sizes, with the `--set` runtime fields; with no
runs, the first export's config with them); they are not trained.

FID and IS proper need `--inception_weights=PATH`, pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth` (sha256-checked, read without running pickled code):
then every row gets the FID of its images against the split's true images and the IS of its
images (one split over the eval images), with the number of images; without it the columns
say "not computed" (`colorjax.metrics.inception_scores`).
"""

from __future__ import annotations

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()

import sys

from absl import app, flags, logging

from colorjax.platform import cli, runtime
from colorjax.compare.runs import cpu_model_configs
from colorjax.compare.table import compare

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", [], "Model configs to compare: configs/<m>.py[:variant],...")
flags.DEFINE_bool("all", False, "Every model config in configs/ that has a :cpu variant, "
                                "at that variant.")
flags.DEFINE_string("workdir", None, "Directory of the comparison: a run per model in "
                                     "DIR/<name>, and the tables, grid and plots.")
flags.DEFINE_multi_string("set", [], "field=value: a config override passed to every run "
                                     "as --config.field=value (repeatable).")
flags.DEFINE_bool("eval_only", False, "Evaluate the runs already in DIR/<name>; never train.")
flags.DEFINE_list("exports", [], "Exported models (--mode=export, python -m colorjax.convert) "
                                 "to evaluate as rows beside the runs, on the same images.")
flags.DEFINE_list("splits", [], "Eval splits (default: the runs' own config.eval.split).")
flags.DEFINE_integer("num_images", 8, "Images (columns) in compare_grid.png.")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples of the images per interval "
                                        "(0: no intervals).")
flags.DEFINE_string("inception_weights", None,
                    "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (from its GitHub "
                    "release; sha256-checked): adds FID and IS proper to every row. "
                    "Without it those columns say 'not computed'.")
flags.DEFINE_string("compilation_cache", None, runtime.CACHE_HELP)
flags.mark_flags_as_required(["workdir"])

def main(argv):
    if len(argv) > 1:
        cli.fail(f"error: unexpected arguments: {argv[1:]}; see --helpshort")
    logging.set_verbosity(logging.WARNING)
    if FLAGS.all and FLAGS.configs:
        cli.fail("error: give --configs or --all, not both")
    specs = cpu_model_configs() if FLAGS.all else list(FLAGS.configs)
    if not specs and not FLAGS.exports:
        cli.fail("error: no models to compare: give --configs=configs/<m>.py[:variant],... "
                 "or --all, and/or --exports=DIR,...")
    for s in FLAGS.set:
        if "=" not in s or not s.split("=", 1)[0].strip():
            cli.fail(f"error: --set={s!r} is not field=value (e.g. --set=data.image_size=32)")
    if FLAGS.num_images < 1 or FLAGS.bootstrap < 0:
        cli.fail("error: --num_images must be >= 1 and --bootstrap >= 0")
    runtime.enable_compilation_cache(FLAGS.compilation_cache)  # as colorjax.main's runs
    inception = None
    if FLAGS.inception_weights:  # loaded (and hash-checked) once, before any training
        from colorjax.models.inception import InceptionWeightsError, load_inception
        try:
            inception = load_inception(FLAGS.inception_weights)
        except InceptionWeightsError as e:
            cli.fail(f"error: --inception_weights: {e}")
    sys.exit(compare(specs, FLAGS.workdir, list(FLAGS.set), FLAGS.eval_only,
                     list(FLAGS.splits), FLAGS.num_images, FLAGS.bootstrap, inception,
                     FLAGS.inception_weights, list(FLAGS.exports)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
