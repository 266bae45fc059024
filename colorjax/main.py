"""Entry point: `python -m colorjax.main --config=configs/unet.py --workdir=runs/unet`.

Modes: train (resumes from the workdir's latest checkpoint), eval (metrics table and grids
for a checkpoint), export (an inference artifact for `colorjax.Colorizer`, by default in
`workdir/export/step_<N>`; `--config.eval.step` picks the checkpoint). Any config field
can be overridden: `--config.batch_size=32`. eval and export need only `--workdir`: they
start from the config saved with the run (`--config.<field>=value` may change what does
not change the trained model: the eval split and data, the sampler, batch sizes, ...).
`--list_configs` lists every config and variant.

A mistake in the flags or the config (an unknown field, a value that is not allowed) ends
the program before anything compiles, with one line on stderr and exit status 2:
`config error: config.<field>: <what is wrong>; allowed: <...>`. `COLORJAX_DEBUG=1` adds
the traceback. On Linux with glibc the process re-executes itself once at start-up with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (colorjax/platform/host_memory.py), which makes CPU training
steps faster; `COLORJAX_MALLOC=default` turns that off.
"""

from __future__ import annotations

if __name__ == "__main__":
    # First, before JAX starts its threads: glibc reads its malloc tunables only when a
    # process starts, so this re-executes the process once with huge pages for XLA's
    # per-step buffers (host_memory.py; COLORJAX_MALLOC=default opts out).
    from colorjax.platform import host_memory
    from colorjax.platform import xla_cpu

    host_memory.reexec_with_huge_pages()
    # XLA:CPU's convolution choice, before JAX starts its backend (xla_cpu.py).
    xla_cpu.configure_program()

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from colorjax.platform import cli
from colorjax.config import fields as config_fields

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py[:variant]; --list_configs lists them). "
    "--mode=eval and --mode=export default to the run's own, saved with its checkpoints.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "export"], "What to do.")
flags.DEFINE_string("export_dir", None,
                    "--mode=export: where to write the export (default: workdir/export/step_<N>).")
flags.DEFINE_string("compilation_cache", None,
                    "JAX persistent compilation cache directory ('none' disables; default "
                    "$COLORJAX_COMPILATION_CACHE or ~/.cache/colorjax/jax_compilation_cache).")
flags.DEFINE_bool("list_configs", False, "List every config and variant in configs/, one "
                  "line each, and exit.")
flags.mark_flags_as_required(["workdir"])

# What a config field's value must look like on the command line, by the default's type.
_TYPE_WORDS = {bool: "True or False", int: "integers", float: "numbers", str: "strings",
               tuple: "tuples, e.g. '(8, 16)'"}


def _flag_value(argv, name: str) -> str | None:
    """The value of --<name> in `argv` (`--name=X` or `--name X`), if there is one."""
    for i, arg in enumerate(argv):
        if m := re.fullmatch(rf"--?{name}=(.*)", arg, re.DOTALL):
            return m.group(1)
        if re.fullmatch(rf"--?{name}", arg) and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _config_path(argv) -> str | None:
    """The value of --config in `argv` (`--config=X` or `--config X`), if there is one."""
    return _flag_value(argv, "config")


def _with_saved_config(argv) -> list[str]:
    """`argv`, and for --mode=eval|export without --config, `--config=` the run's saved
    config (`run_config.get_config`): its overrides then apply to the run's own fields. No
    checkpoint to read is one line."""
    if _flag_value(argv, "mode") not in ("eval", "export") or _config_path(argv) is not None:
        return argv
    workdir = _flag_value(argv, "workdir")
    if not workdir:
        return argv  # absl names the missing --workdir
    from colorjax.training import run_config
    try:
        run_config.saved_config(workdir)  # there, and readable
    except Exception as e:  # noqa: BLE001  a missing or unreadable checkpoint: one line
        cli.fail(f"error: {e}" if isinstance(e, FileNotFoundError) else
                 f"error: cannot read the config saved in {workdir}/checkpoints: {e}")
    return [argv[0], f"--config={run_config.__file__}:{workdir}", *argv[1:]]


def _with_installed_preset(argv) -> list[str]:
    """`argv`, with `--config=configs/<name>.py[:variant]` read as the installed preset
    where no such file is here (colorjax installed, run outside a checkout)."""
    from colorjax.presets import preset_path

    out = []
    for i, arg in enumerate(argv):
        if arg.startswith(("--config=", "-config=")):
            flag, value = arg.split("=", 1)
            path, colon, variant = value.partition(":")
            arg = f"{flag}={preset_path(path)}{colon}{variant}"
        elif i and argv[i - 1] in ("--config", "-config"):
            path, colon, variant = arg.partition(":")
            arg = f"{preset_path(path)}{colon}{variant}"
        out.append(arg)
    return out


def _overrides(argv) -> list[tuple[str, str | None]]:
    """(field, value) of each --config.<field>[=value] (and --noconfig.<field>) in argv."""
    found = []
    for arg in argv:
        if m := re.fullmatch(r"--?(?:no)?config\.([^=]+)(?:=(.*))?", arg, re.DOTALL):
            found.append((m.group(1), m.group(2)))
    return found


def _overridden_fields(argv) -> list[str]:
    """Dotted names of the config fields the command line sets (for eval and export, which
    start from the run's saved config)."""
    return [field for field, _ in _overrides(argv)]


def _explain_flag_error(error: Exception, argv) -> str:
    """The one line that says what is wrong with the command line behind `error`.

    ml_collections reports an unknown override field as a KeyError traceback and a
    config file that fails to load as an error wrapped in others, so the config file is
    loaded again here and each override checked against it: that names the field."""
    from colorjax.training.validation import unknown_field_error
    from colorjax.presets import load_config

    path = _config_path(argv)
    if path is None:
        return cli.flag_error(error)
    try:
        config = load_config(path)
    except Exception as e:  # noqa: BLE001  a missing file, a bad variant, a broken file
        return f"config error: --config={path}: {e}"
    for field, _ in _overrides(argv):
        if (unknown := unknown_field_error(config, field)) is not None:
            return f"config error: {unknown}"
    if m := re.match(r"flag --config\.([\w.]+)=(.*?): (.*)", str(error), re.DOTALL):
        field, value, why = m.groups()
        kind = type(config_fields.get(config, field))
        return (f"config error: config.{field}: {value!r} is not allowed ({why}); allowed: "
                f"{_TYPE_WORDS.get(kind, kind.__name__ + ' values')}")
    if isinstance(error, flags.Error) and "config" not in str(error):
        return cli.flag_error(error)  # another flag (--mode, --workdir)
    return f"config error: {error}"


def _parse_flags(argv):
    """absl's flag parsing, but every mistake in one line with exit status 2; --help and
    --list_configs list the configs and exit 0."""
    from colorjax.presets import catalog_text

    argv = cli.help_alias(argv)
    if any(re.fullmatch(r"--?list_configs(=(true|1))?", a, re.I) for a in argv[1:]):
        print(catalog_text(), flush=True)
        sys.exit(0)
    if not cli.asks_for_help(argv):
        argv = _with_installed_preset(_with_saved_config(argv))
    try:
        with cli.help_exits_zero(argv, epilogue=catalog_text):
            args = FLAGS(argv)
        if FLAGS.config is None:
            cli.fail("error: --mode=train needs --config=configs/<model>.py[:variant] "
                     "(--list_configs lists them), e.g. --config=configs/unet.py:cpu")
        FLAGS.config.keys()  # a config file that failed to load raises only when read
        return args
    except Exception as e:  # noqa: BLE001  explained in one line; COLORJAX_DEBUG=1 shows it
        cli.fail(_explain_flag_error(e, argv))


def main(argv):
    if len(argv) > 1:
        cli.fail(f"error: unexpected arguments: {argv[1:]}; see --helpshort")
    # TFDS and orbax log every file they open at INFO; colorjax reports progress itself.
    logging.set_verbosity(logging.WARNING)
    cli.quiet_closed_loop_callbacks()  # orbax's reads after a failed one: not the user's news
    if FLAGS.mode == "export":
        # Only the checkpoint and the objective: no data pipeline, no training loop. It
        # reads one checkpoint and writes one directory, so in a multi-process launch
        # process 0 does it alone, as a single process, and the others have nothing to do.
        from colorjax.platform import parallel
        if parallel.launched_process_id() != 0:
            return
        from colorjax.training.export import ExportError, export_checkpoint
        from colorjax.training import run_summary
        try:
            path = export_checkpoint(FLAGS.config, FLAGS.workdir, FLAGS.export_dir,
                                     overridden=_overridden_fields(sys.argv))
        except FileNotFoundError as e:  # no such checkpoint
            cli.fail(f"error: {e}")
        except ExportError as e:  # a damaged checkpoint, a foreign directory: no traceback
            cli.fail_now(f"error: {e}")
        print(f"exported to {path}", flush=True)
        print("\n".join(run_summary.export_lines(run_summary.shown_path(path),
                                                 FLAGS.workdir)), flush=True)
        return
    from colorjax.platform import parallel
    from colorjax.training import run_config
    from colorjax.platform import runtime
    from colorjax.training import loop as train
    from colorjax.training.checkpoint import DamagedCheckpointError
    from colorjax.training.validation import ConfigError
    from colorjax.training.evaluate import NonFiniteMetricsError

    # oneDNN for bfloat16 convolutions, before JAX starts its backend (xla_cpu.py).
    from colorjax.platform import xla_cpu
    try:
        xla_cpu.configure_for_precision(FLAGS.config.get("precision"))
    except ValueError as e:  # a bad COLORJAX_AUTO_PRECISION: one line, as a bad flag
        cli.fail(f"error: {e}")
    parallel.initialize_distributed()
    runtime.enable_compilation_cache(FLAGS.compilation_cache)
    try:
        if FLAGS.mode == "train":
            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        elif FLAGS.mode == "eval":
            # The run's saved config, with only the fields given on the command line.
            train.evaluate_checkpoint(FLAGS.config, FLAGS.workdir,
                                      overridden=_overridden_fields(sys.argv))
    except FileNotFoundError as e:  # no checkpoint to evaluate, no photo folder: one line
        cli.fail(f"error: {e}")
    except DamagedCheckpointError as e:  # a failed read: orbax's threads must not add noise
        cli.fail_now(f"error: {e}")
    except (train.NonFiniteLossError, NonFiniteMetricsError, run_config.RunConfigError) as e:
        sys.exit(f"error: {e}")  # what went wrong and what to do: no traceback
    except ConfigError as e:  # raised by validate_config, before anything compiles
        cli.fail(f"config error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
