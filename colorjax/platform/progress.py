"""Progress bars and messages of the command-line tools (train, compare, colorize).

A bar is labelled ("train: 40%|...| 120/300 [00:31<00:47, 3.8step/s]") and goes to stderr;
messages go through `say`, which prints a line *above* any open bar (the bar is cleared,
the line printed, the bar drawn again) instead of after the bar's text on its line. A bar
whose first step compiles calls `restart_clock` after it, so that its rate and time left
measure steps, not compilation. `close` prints the final bar once, before a summary.
"""

from __future__ import annotations

import sys
import warnings

from tqdm import tqdm


def bar(total: int, label: str, unit: str, *, initial: int = 0,
        enabled: bool = True) -> tqdm:
    """A progress bar on stderr labelled `label` (e.g. "train"), counting `unit`s. Python
    warnings are printed above it from then on, like `say`'s lines."""
    if enabled:
        warnings.showwarning = _show_warning
    return tqdm(total=total, initial=initial, desc=label, unit=unit, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, mininterval=1.0)


def say(*args, file=None, **kwargs) -> None:
    """`print`, flushed, on a line of its own above any open progress bar (stdout and
    stderr share a terminal: a bar on stderr is cleared before a line goes to stdout)."""
    with tqdm.external_write_mode(file=file):
        print(*args, file=file if file is not None else sys.stdout, flush=True, **kwargs)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """`warnings.showwarning`, on lines above any open progress bar."""
    text = warnings.formatwarning(message, category, filename, lineno, line)
    say(text.rstrip("\n"), file=file if file is not None else sys.stderr)


def restart_clock(progress: tqdm, postfix: str | None = None) -> None:
    """Count `progress`'s rate and time left from now, its current count as the start:
    called after the first step, whose time is mostly compilation (minutes on a CPU),
    which would otherwise make the first estimates of the time left far too long."""
    done = progress.n
    progress.reset()  # a fresh clock and rate (n = 0)
    progress.initial = progress.n = progress.last_print_n = done
    if postfix is not None:
        progress.set_postfix_str(postfix, refresh=False)
    progress.refresh()
