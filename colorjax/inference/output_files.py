"""Where `python -m colorjax.colorize` writes, and the rules that keep it from overwriting
anything it should not: output names, the safety check made before the model loads, and
atomic writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections import Counter

import numpy as np
from PIL import Image


# --- command line ---------------------------------------------------------------------

OUTPUT_RULES = """\
output names (the same inputs and options always give the same names):
  Each photo is written under the output folder at its path relative to --input (a single
  file: its own name), with the extension of --format: in/sub/x.jpg -> out/sub/x.png.
  The source extension stays in the name only where two inputs in one folder share a name
  apart from it (case ignored): a.jpg, a.png -> a_jpg.png, a_png.png; a lone b.jpg -> b.png.
  A name still taken (case ignored), by an earlier input (in sorted order, upper case first)
  or by another file of this run such as a compare strip, gets _2, _3, ...:
  b.JPG, b.jpg -> b_jpg.png, b_jpg_2.png; c.png, c_compare.png with --compare -> c.png,
  c_compare.png (c.png's strip), c_compare_2.png, c_compare_2_compare.png.
  --num_samples=N > 1 writes NAME_sample1 ... NAME_sampleN instead of NAME; --compare adds
  NAME_compare. A video keeps its container (.mp4 .mov .m4v .mkv .webm; any other becomes
  .mkv) and gets one file: in/film.mp4 -> out/film.mp4, in/old.avi -> out/old.mkv.

safety (all checked before the model loads; exit status 2):
  Inputs are never written over or into: an output folder equal to or inside the input
  folder, or an output that is an input file (real paths, symlinks and hard links resolved),
  is refused. The list of inputs is fixed before anything is written. Existing outputs are
  not replaced unless --overwrite: without it the run stops, saying how many exist and
  naming the first. An output folder that cannot be written is reported. A file that cannot
  be written during the run is reported, the others go on, and the exit status is 1.

interrupted runs:
  Every file is written as a hidden partial file (.NAME.PID.tmp) and renamed into place
  when complete, so an output that exists is whole. Ctrl-C stops the run with its summary
  (what was written, what was not; exit status 130): a photo's files being saved are
  finished first, so that the summary counts every file on disk; a video's partial file is
  removed. Partial files left by a killed run are removed when the next run starts.
  --skip_existing resumes: outputs that exist are kept, photos and videos whose outputs
  all exist are not read again, and only the missing files are written (it trusts that
  they came from the same command).
"""


def output_stems(rels: list[str], suffixes=("",)) -> list[str]:
    """The output stem (path relative to the output folder, no extension) of each input,
    given by its relative path `rels[i]`, under the rules of `OUTPUT_RULES`.

    `suffixes` are what each input's files add to its stem (e.g. "" and "_compare"): a stem
    is free only when none of the names it would write is taken, ignoring case (so that the
    names stay distinct on case-insensitive file systems too).
    """
    bases = [os.path.splitext(r)[0] for r in rels]
    shared = Counter(b.lower() for b in bases)
    wanted = [b if shared[b.lower()] == 1 else f"{b}_{os.path.splitext(r)[1][1:].lower()}"
              for b, r in zip(bases, rels)]
    taken: set[str] = set()
    stems = []
    for want in wanted:
        stem, n = want, 1
        while any((stem + s).lower() in taken for s in suffixes):
            n += 1
            stem = f"{want}_{n}"
        taken.update((stem + s).lower() for s in suffixes)
        stems.append(stem)
    return stems


def output_suffixes(num_samples: int, compare: bool) -> list[str]:
    """What each photo's files add to its stem, in the order they are written."""
    samples = [f"_sample{k + 1}" for k in range(num_samples)] if num_samples > 1 else [""]
    return samples + (["_compare"] if compare else [])


@contextlib.contextmanager
def interrupts_held():
    """Hold a SIGINT (Ctrl-C) that arrives inside the block until its end, then raise
    KeyboardInterrupt there: a file renamed into place and the counters that report it
    are one step that Ctrl-C cannot split (else the summary can miss a file on disk).
    Blocking the signal (pthread_sigmask) would not do: another thread can take it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers, and only it gets SIGINT
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if previous is signal.default_int_handler:
            raise KeyboardInterrupt
        if callable(previous):  # a caller's own handler gets the signal it missed
            previous(signal.SIGINT, received[0])


def save_atomic(rgb8: np.ndarray, path: str, fmt: str) -> None:
    """Write through a hidden temporary file beside `path`, then rename it into place: an
    interrupted run leaves no half-written image, and a symlink at `path` is replaced rather
    than written through. (Hidden files are never read as inputs, see `photos.image_files`.)"""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # open(), unlike mkstemp, honours the umask
            if fmt == "jpg":
                Image.fromarray(rgb8).save(f, "JPEG", quality=95, subsampling=0)
            else:
                # Level 1, as data/images.py: a 512x768 result in 24 ms against 34 at level
                # 3 (the CLI's largest cost per photo), 7% larger, still lossless.
                Image.fromarray(rgb8).save(f, "PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_files(images: list, paths: list[str], fmt: str, keep=frozenset(), report=print) -> int:
    """`save_atomic` each of one input's `images` as `paths`, except those in `keep`
    (--skip_existing); how many were written. A file that cannot be written is reported
    (`report`) and the others go on."""
    written = 0
    for rgb8, path in zip(images, paths):
        if path in keep:
            continue
        try:
            save_atomic(rgb8, path, fmt)
            written += 1
        except OSError as e:
            report(f"could not write {path}: {e.strerror or e}")
    return written


# The hidden partial files `save_atomic` and `video_io.VideoWriter` write beside an output:
# .NAME.PID.tmp (photos), .NAME.PID.tmp.EXT (videos).
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def _running(pid: int) -> bool:
    """Whether a process `pid` other than this one exists (on this machine)."""
    if pid == os.getpid():  # this run has written nothing yet: a namesake's leftover
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process
        return True
    return True


def remove_stale_partials(folders) -> list[str]:
    """Remove the partial files an interrupted run left in `folders` (not recursive): the
    hidden temporary files of `save_atomic`/`VideoWriter` whose writing process is gone (a
    concurrent run's are left alone). Returns the paths removed."""
    removed = []
    for folder in sorted(set(folders)):
        try:
            names = os.listdir(folder)
        except OSError:  # not created yet, or unreadable: nothing of ours there
            continue
        for name in sorted(names):
            m = _PARTIAL.match(name)
            path = os.path.join(folder, name)
            if m and not _running(int(m["pid"])) and os.path.isfile(path) \
                    and not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
    return removed


def _existing_ancestor(path: str) -> str:
    """`path` itself or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _is_within(path: str, folder: str) -> bool:
    """Whether `path` (existing or not) is `folder` or lies inside it, symlinks resolved.
    Ancestors are compared with `samefile`, which also sees through case-insensitive names
    and bind mounts where comparing strings would not."""
    p = os.path.realpath(path)
    while True:
        if os.path.exists(p) and os.path.samefile(p, folder):
            return True
        parent = os.path.dirname(p)
        if parent == p:
            return False
        p = parent


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def check_outputs(args, paths: list[str], outputs: list[str]) -> str | None:
    """Why the planned `outputs` may not be written (see the safety rules of `OUTPUT_RULES`),
    or None. Only looks at the file system: nothing is created."""
    out = args.output
    ancestor = _existing_ancestor(out)
    if not os.path.isdir(ancestor):
        what = "is a file" if ancestor == os.path.abspath(out) else f"is under the file {ancestor}"
        return f"--output={out} {what}, not a folder"
    if os.path.isdir(args.input) and _is_within(out, args.input):
        return (f"--output={out} is the input folder or inside it (--input={args.input}); "
                "colorize never writes into its inputs: choose an output folder outside it")
    if os.path.isdir(args.input):  # also when the input folder lies inside the output folder
        first_in = {}  # output folder -> its first output, checked once per folder
        for o in outputs:
            first_in.setdefault(os.path.dirname(o), o)
        for folder, first in first_in.items():
            if _is_within(folder, args.input):
                return (f"--output={out}: {first} would lie inside --input={args.input}; "
                        "colorize never writes into its inputs")
    # Only an output that exists can be an input; comparing (device, inode) sees through
    # symlinks and hard links alike.
    inputs = {}
    for p in paths:
        with contextlib.suppress(OSError):  # a dangling symlink is skipped when read
            inputs[_file_id(p)] = p
    existing = [o for o in outputs if os.path.lexists(o)]
    for o in existing:
        same = inputs.get(_file_id(o)) if os.path.exists(o) else None
        if same:
            return (f"--output={out}: {o} would replace the input {same}; "
                    "choose another output folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"--output={out}: cannot write in {ancestor} (permission denied)"
    if existing and not args.overwrite and not getattr(args, "skip_existing", False):
        what = (f"output file {existing[0]} already exists" if len(existing) == 1 else
                f"{len(existing)} output files already exist (the first: {existing[0]})")
        return (f"{what}; pass --overwrite to replace, --skip_existing to keep them and "
                "colorize only what is missing, or choose another --output")
    return None
