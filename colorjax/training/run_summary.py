"""What the end of a run says: the files it wrote, how the model compares with gray in
words, and the commands that come next (export, colorize, serve) with the run's own paths.

The commands are printed as they can be pasted into a shell in the directory the run was
started from: the interpreter is `python` when that is the one on PATH, else its path
(`.venv/bin/python` after the README's two commands), and every path is shell-quoted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

# Where a colorize command's photos come from: the user's own (a file or a folder).
PHOTOS = "YOUR_PHOTOS"


def python_command() -> str:
    """How to call this interpreter from the current directory: `python` when PATH's
    `python` is this very file (an activated venv), else its path, relative where it lies
    below the current directory."""
    exe = sys.executable or "python"
    on_path = shutil.which("python")
    if on_path and os.path.abspath(on_path) == os.path.abspath(exe):
        return "python"
    shown = shown_path(exe)
    return shown if os.sep in shown else os.path.join(".", shown)  # not a PATH lookup


def shown_path(path: str) -> str:
    """`path` relative to the current directory where it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else os.path.abspath(path)


def command(module: str, *args: str) -> str:
    """`python -m <module> <args>` as one shell-quoted line."""
    return shlex.join([python_command(), "-m", module, *args])


def export_dir(workdir: str, step: int) -> str:
    """Where `--mode=export` writes step `step` of `workdir` by default."""
    return os.path.join(workdir, "export", f"step_{step}")


def export_command(workdir: str) -> str:
    return command("colorjax.main", f"--workdir={workdir}", "--mode=export")


def use_commands(export: str, out: str) -> list[tuple[str, str]]:
    """(what, command) to colorize photos into `out` with the export at `export`, and to
    serve it."""
    return [
        ("colorize", command("colorjax.colorize", f"--model={export}", f"--input={PHOTOS}",
                             f"--output={out}")
         + f"   # {PHOTOS}: a photo or a folder of them"),
        ("serve", command("colorjax.serve", f"--model={export}")
         + "   # a page at http://127.0.0.1:8000/"),
    ]


def _lines(pairs: list[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max(len(what) for what, _ in pairs) + 1
    return [f"{indent}{(what + ':').ljust(width)} {text}" for what, text in pairs]


def next_lines(workdir: str, step: int) -> list[str]:
    """"next:" and the export, colorize and serve commands for checkpoint `step`."""
    return ["next:", *_lines([("export", export_command(workdir)),
                              *use_commands(export_dir(workdir, step),
                                            os.path.join(workdir, "colorized"))])]


def training_lines(workdir: str, step: int, checkpoint: str, table: str | None,
                   grid: str | None, versus: str | None) -> list[str]:
    """The end of a training run: what it wrote, the comparison with gray (`versus`: "on
    <split> (<n> images): better than gray on ..."), what is next."""
    wrote = [("checkpoint", f"step {step} in {checkpoint}")]
    if table:
        wrote.append(("eval table", table))
    if grid:
        wrote.append(("sample grid", f"{grid} (rows: gray | prediction | truth)"))
    lines = [f"done: {workdir} is at step {step}; it wrote", *_lines(wrote)]
    if versus:
        lines.append(f"against gray (ab = 0) {versus}")
    return lines + next_lines(workdir, step)


def export_lines(export: str, workdir: str) -> list[str]:
    """After `--mode=export` of `workdir`: how to use the export."""
    return ["next:", *_lines(use_commands(export, os.path.join(workdir, "colorized")))]
