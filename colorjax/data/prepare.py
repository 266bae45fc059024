"""Prepare a folder of photos as a TFDS dataset that training can read.

    python -m colorjax.data.prepare --src=DIR --name=NAME [--data_dir=...]
        [--val_fraction=0.1] [--test_fraction=0.0] [--min_size=32] [--gray_threshold=1.0]

Then train with ``--config.data.name=NAME`` (and the same ``--config.data.data_dir``).
Training with ``--config.data.folder=DIR`` does the same on first use, so running this by
hand is optional. Prints what was kept and why the other files were dropped. A mistake
(a missing folder, a bad name, no usable photo) is one line on stderr naming the folder
or file, exit status 2.
"""

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax.platform import xla_cpu

    xla_cpu.configure_program()

from absl import app, flags, logging

from colorjax.platform import cli
from colorjax.data import config, folder


def _define_flags():
    # Defined here, not at import, so importing this module never adds flags to a
    # program that has its own (e.g. colorjax.main's --name-like flags).
    flags.DEFINE_string("src", None, "Folder of photos (searched recursively).", required=True)
    flags.DEFINE_string("name", None, "Dataset name (lower snake case); default: from the folder.")
    flags.DEFINE_string("data_dir", None, "Where to write (default $COLORJAX_DATA_DIR or "
                        "~/.cache/colorjax/tensorflow_datasets).")
    flags.DEFINE_float("val_fraction", 0.1, "Hash-split fraction for 'validation' (folders "
                       "without train/ val/ test/ subfolders).")
    flags.DEFINE_float("test_fraction", 0.0, "Hash-split fraction for 'test'.")
    flags.DEFINE_integer("min_size", config.DEFAULT_MIN_SIZE, "Smallest accepted shorter side, px.")
    flags.DEFINE_float("gray_threshold", config.DEFAULT_GRAY_THRESHOLD, "Near-gray limit: mean "
                       "max(R,G,B)-min(R,G,B) in 8-bit levels.")
    flags.DEFINE_boolean("force", False, "Prepare again even if the folder is unchanged.")


def main(argv):
    if len(argv) > 1:
        cli.fail(f"error: unexpected arguments: {argv[1:]}; see --helpshort")
    logging.set_verbosity(logging.WARNING)  # TFDS logs every shard it writes at INFO
    f = flags.FLAGS
    try:
        report = folder.prepare_folder(
            f.src, f.name, f.data_dir, val_fraction=f.val_fraction,
            test_fraction=f.test_fraction, min_size=f.min_size,
            gray_threshold=f.gray_threshold, force=f.force,
        )
    except (ValueError, OSError) as e:  # the user's folder or flags, not a bug: one line
        cli.fail(f"error: {e}")
    print(report)
    print(f"Train with: --config.data.name={report.name}"
          + (f" --config.data.data_dir={f.data_dir}" if f.data_dir else ""))


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
