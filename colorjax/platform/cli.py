"""One-line errors for the command-line entry points (colorjax.main, colorjax.data.prepare).

A user's mistake (a wrong flag, config field or folder) ends the program with one line on
stderr and exit status 2, the status of a usage error. `COLORJAX_DEBUG=1` prints the
traceback above that line, for bug reports.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback

USAGE_ERROR = 2


def one_line(text: str) -> str:
    """`text` with its line breaks folded into spaces: every error fits one line."""
    return " ".join(str(text).split())


def fail(message: str) -> None:
    """Print `message` as one line on stderr and exit 2 (with the traceback if debugging)."""
    if os.environ.get("COLORJAX_DEBUG") == "1" and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(one_line(message), file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)


def fail_now(message: str, code: int = 1) -> None:
    """Print `message` as one line on stderr and end the process at once with `code`.

    For errors raised while orbax reads a checkpoint (nothing is being written then): its
    background threads outlive the failed read and, during an ordinary interpreter shutdown,
    print tracebacks of their own (a closed asyncio loop, a TensorStore spec of 190 lines)
    under the one line."""
    if os.environ.get("COLORJAX_DEBUG") == "1" and sys.exc_info()[0] is not None:
        traceback.print_exc()
    # From here on, what those threads print goes to /dev/null, and the one line to the
    # real stderr: a print racing theirs was sometimes glued to a traceback's first lines.
    try:
        sys.stderr.flush()
        real = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.write(real, (one_line(message) + "\n").encode())
    except OSError:  # no file descriptors to spare: print as before
        print(one_line(message), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def flag_error(error: Exception) -> str:
    """A flag that absl rejected, as one line that points at the help."""
    return f"error: {one_line(error).rstrip('.')}; see --helpshort"


def asks_for_help(argv) -> bool:
    """Whether `argv` has one of absl's help flags (or -h, which `help_alias` maps)."""
    return any(re.fullmatch(r"--?(help|helpshort|helpfull|helpxml|\?|h)", a) for a in argv[1:])


def help_alias(argv) -> list[str]:
    """`argv` with `-h`, which absl does not know, as `--help`."""
    return [argv[0], *("--help" if a == "-h" else a for a in argv[1:])]


@contextlib.contextmanager
def help_exits_zero(argv, epilogue=None):
    """absl prints the help of --help (--helpfull, ...) and then exits with status 1; this
    makes it 0, as help is not an error, after printing `epilogue()` if given."""
    try:
        yield
    except SystemExit as e:
        if e.code == 1 and asks_for_help(argv):
            if epilogue is not None:
                print("\n" + epilogue(), flush=True)
            sys.exit(0)
        raise


def parse_flags(argv):
    """absl's flag parsing (an `app.run` flags_parser), a rejected flag in one line; help
    exits 0."""
    from absl import flags
    argv = help_alias(argv)
    try:
        with help_exits_zero(argv):
            return flags.FLAGS(argv)
    except flags.Error as e:
        fail(flag_error(e))


def _a_closed_loop_callback(exc_type, exc, tb) -> bool:
    """Whether an exception is asyncio's "Event loop is closed" raised inside
    `call_soon_threadsafe`: TensorStore completing a read for orbax after the read's loop
    has closed, which happens when a checkpoint read fails (it is printed through
    sys.excepthook by the C++ side, under or above colorjax's one line)."""
    if exc_type is not RuntimeError or "Event loop is closed" not in str(exc):
        return False
    frames = traceback.extract_tb(tb)
    return any(f.name == "call_soon_threadsafe" for f in frames)


def quiet_closed_loop_callbacks() -> None:
    """Drop `_a_closed_loop_callback` exceptions from sys.excepthook's output (every other
    exception is printed as before). Called by `colorjax.main`, whose failed checkpoint
    reads end in one line (`fail_now`); COLORJAX_DEBUG=1 keeps them."""
    if os.environ.get("COLORJAX_DEBUG") == "1":
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if not _a_closed_loop_callback(exc_type, exc, tb):
            previous(exc_type, exc, tb)

    sys.excepthook = hook
