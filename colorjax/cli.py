"""One-line errors for the command-line entry points (colorjax.main, colorjax.data.prepare).

A user's mistake (a wrong flag, config field or folder) ends the program with one line on
stderr and exit status 2, the status of a usage error. `COLORJAX_DEBUG=1` prints the
traceback above that line, for bug reports.
"""

from __future__ import annotations

import os
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


def flag_error(error: Exception) -> str:
    """A flag that absl rejected, as one line that points at the help."""
    return f"error: {one_line(error).rstrip('.')}; see --helpshort"


def parse_flags(argv):
    """absl's flag parsing (an `app.run` flags_parser), a rejected flag in one line."""
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(flag_error(e))
