"""Prepare a folder of photos as a TFDS dataset (array_record), with a report of what was dropped.

Layout: when the folder has ``train/``, ``val/`` or ``validation/``, ``test/`` subfolders
they are the splits (``val/`` -> ``validation``) and files outside them are ignored (and
listed). Otherwise each file goes to a split by a hash of its relative path, so adding
photos never moves the others. The folder is searched recursively for JPEG, PNG, BMP,
WebP and TIFF files; hidden files and folders are skipped.

Results are cached: preparing again is a no-op while the folder's file list (relative
paths, sizes, modification times) and the options are unchanged.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from tqdm.auto import tqdm

from colorjax.media import photos
from colorjax.data import builders, images

# Bump when the rules of images.check_image change, so cached datasets are rebuilt.
RULES_VERSION = 1
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
REJECTED_LIST = "colorjax_rejected.tsv"
_EXAMPLES_SHOWN = 5


@dataclasses.dataclass
class PrepareReport:
    """What prepare did. ``str(report)`` is the text the CLI prints."""

    name: str
    src: str
    path: str  # the TFDS dataset directory (<data_dir>/<name>/<version>)
    scanned: int  # image files found (by extension)
    splits: dict[str, int]  # accepted images per split
    rejected: dict[str, int]  # reason -> count
    examples: dict[str, list[str]]  # reason -> first few "relative/path (detail)"
    converted: dict[str, int]  # original mode -> images converted to 8-bit RGB
    ignored: dict[str, int]  # hidden files, other extensions, files outside split folders
    rejected_list: str  # every rejected or ignored image file, one per line (TSV)
    options: dict
    seconds: float = 0.0
    cached: bool = False

    @property
    def kept(self) -> int:
        return sum(self.splits.values())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PrepareReport:
        d = json.loads(text)
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def __str__(self) -> str:
        how = "found up to date (cached)" if self.cached else f"prepared in {self.seconds:.1f} s"
        split_text = ", ".join(f"{s} {n}" for s, n in self.splits.items())
        lines = [
            f"Dataset '{self.name}' from {self.src}: {how}",
            f"  stored at {self.path} (array_record)",
            f"  {self.scanned} image files scanned; kept {self.kept}: {split_text}",
            f"  options: {json.dumps(self.options, sort_keys=True)}",
        ]
        if self.converted:
            conv = ", ".join(f"{m} {n}" for m, n in sorted(self.converted.items()))
            lines.append(f"  converted to 8-bit RGB (kept): {conv}")
        total = sum(self.rejected.values())
        lines.append(f"  rejected {total}:" if total else "  rejected 0")
        for reason, n in sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {reason:<13} {n:>6}  {images.REASONS.get(reason, '')}")
            for ex in self.examples.get(reason, []):
                lines.append(f"        {ex}")
            if n > len(self.examples.get(reason, [])):
                lines.append(f"        ... and {n - len(self.examples.get(reason, []))} more")
        for what, n in sorted(self.ignored.items()):
            if n:
                lines.append(f"  ignored {n} {what.replace('_', ' ')}")
                for ex in self.examples.get(what, []):
                    lines.append(f"        {ex}")
        lines.append(f"  full list of rejected/ignored files: {self.rejected_list}")
        return "\n".join(lines)


def default_name(src: str | os.PathLike) -> str:
    """``<folder name>_<8 hex digits of its absolute path>``: distinct for two 'photos' folders."""
    src = Path(src).expanduser().resolve()
    stem = re.sub(r"[^a-z0-9]+", "_", src.name.lower()).strip("_") or "folder"
    if not stem[0].isalpha():
        stem = "f_" + stem
    return f"{stem}_{hashlib.sha1(os.fspath(src).encode()).hexdigest()[:8]}"


def check_name(name: str, field: str = "name", reserved_ok: bool = False) -> None:
    """Dataset names are TFDS names: lower snake case, and not a TFDS catalog name."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
        raise ValueError(
            f"{field}={name!r} is not a valid dataset name: use lower case letters, digits "
            "and '_', starting with a letter (e.g. 'my_photos')."
        )
    if name == "colorjax_demo" and not reserved_ok:
        raise ValueError(f"{field}='colorjax_demo' is reserved for the built-in demo dataset.")
    import tensorflow_datasets as tfds  # noqa: PLC0415  (only needed here)

    if name in tfds.list_builders(with_community_datasets=False):
        raise ValueError(
            f"{field}={name!r} is a TFDS catalog dataset name; choose another name for a folder."
        )


def hash_split(rel_path: str, val_fraction: float, test_fraction: float) -> str:
    """Deterministic split of one file from its relative path alone."""
    u = int(hashlib.sha256(rel_path.encode("utf-8")).hexdigest()[:15], 16) / float(16**15)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "validation"
    return "train"


def scan(src: Path) -> tuple[list[str], dict[str, int]]:
    """Image files under ``src`` (relative POSIX paths, sorted) and counts of what was skipped."""
    files, ignored = [], {"hidden_files": 0, "files_with_other_extensions": 0}
    for root, dirs, names in os.walk(src):
        hidden = [d for d in dirs if d.startswith(".")]
        ignored["hidden_files"] += len(hidden)  # counted as one entry per hidden folder
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            if n.startswith("."):
                ignored["hidden_files"] += 1
            elif photos.is_image_path(n):
                files.append(Path(os.path.relpath(os.path.join(root, n), src)).as_posix())
            else:
                ignored["files_with_other_extensions"] += 1
    return sorted(files), ignored


def has_photo(src: Path) -> bool:
    """Whether ``src`` holds at least one file ``scan`` would take (stops at the first):
    what config validation asks of a folder before anything is prepared."""
    for _, dirs, names in os.walk(src):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(not n.startswith(".") and photos.is_image_path(n) for n in names):
            return True
    return False


class NoUsableImageError(ValueError):
    """A folder none of whose photos passes the checks (too small, near gray, unreadable)."""


def assign_splits(files: list[str], val_fraction: float, test_fraction: float) -> dict[str, str | None]:
    """relative path -> split (None: outside the split folders of a folder that has them)."""
    tops = {f.split("/", 1)[0].lower() for f in files if "/" in f}
    if tops & SPLIT_FOLDERS.keys():
        return {
            f: SPLIT_FOLDERS.get(f.split("/", 1)[0].lower()) if "/" in f else None for f in files
        }
    return {f: hash_split(f, val_fraction, test_fraction) for f in files}


def fingerprint(src: Path, files: list[str]) -> str:
    """Hash of the file list with sizes and modification times: changes when contents do."""
    h = hashlib.sha256()
    for rel in files:
        st = os.stat(src / rel)
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def _lock(path: Path):
    """Exclusive lock so that concurrent runs on one machine prepare a dataset once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_options(min_size, gray_threshold, val_fraction, test_fraction) -> dict:
    """The options that change a prepared dataset (part of its cache key)."""
    return {
        "min_size": int(min_size), "gray_threshold": float(gray_threshold),
        "val_fraction": float(val_fraction), "test_fraction": float(test_fraction),
        "rules_version": RULES_VERSION,
    }


def cache_key(contents_key: str, options: dict) -> str:
    return hashlib.sha256(json.dumps([contents_key, options], sort_keys=True).encode()).hexdigest()


def load_cached(data_dir: Path, name: str, cache_key: str) -> PrepareReport | None:
    info = data_dir / name / builders.PREPARE_INFO
    if not info.is_file() or not (builders.dataset_dir(data_dir, name) / "dataset_info.json").is_file():
        return None
    try:
        saved = json.loads(info.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("cache_key") != cache_key:
        return None
    report = PrepareReport.from_json(json.dumps(saved["report"]))
    report.cached = True
    return report


def prepare_folder(
    src: str | os.PathLike,
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    min_size: int = 32,
    gray_threshold: float = 1.0,
    force: bool = False,
    threads: int | None = None,
    progress: bool = True,
    _cache_key: str | None = None,
    _reserved_ok: bool = False,
    _src_label: str | None = None,
) -> PrepareReport:
    """Validate every photo under ``src`` and write the good ones as TFDS dataset ``name``.

    Args:
      src: the folder (searched recursively).
      name: dataset name; default ``default_name(src)``.
      data_dir: where to write; default ``$COLORJAX_DATA_DIR`` or
        ``~/.cache/colorjax/tensorflow_datasets``.
      val_fraction, test_fraction: hash-split fractions (ignored when split subfolders exist).
      min_size: smallest accepted shorter side, pixels.
      gray_threshold: near-gray limit, mean ``max(R,G,B)-min(R,G,B)`` in 8-bit levels.
      force: prepare even if an up-to-date copy exists.
      threads: threads decoding images (default: CPU count).
      progress: show tqdm progress bars.

    Returns:
      The report (also saved as JSON beside the dataset). Bad files never stop it; it
      raises ValueError only for bad arguments or when no image at all is usable.
    """
    src_path = Path(src).expanduser().resolve()
    if not src_path.is_dir():
        raise ValueError(f"src={os.fspath(src)!r} is not a folder.")
    name = name or default_name(src_path)
    check_name(name, reserved_ok=_reserved_ok)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) "
            "with a sum below 1."
        )
    data_dir = builders.colorjax_data_dir(data_dir)
    options = make_options(min_size, gray_threshold, val_fraction, test_fraction)
    with _lock(data_dir / f".{name}.lock"):
        start = time.perf_counter()
        files, ignored = scan(src_path)
        key = cache_key(_cache_key or fingerprint(src_path, files), options)
        if not force and (cached := load_cached(data_dir, name, key)) is not None:
            return cached
        report = _prepare(src_path, name, data_dir, files, ignored, options, threads, progress)
        report.src = _src_label or report.src
        report.seconds = time.perf_counter() - start
        (data_dir / name / builders.PREPARE_INFO).write_text(
            json.dumps({"cache_key": key, "report": json.loads(report.to_json())}, indent=1)
        )
        return report


def _prepare(src, name, data_dir, files, ignored, options, threads, progress) -> PrepareReport:
    splits_of = assign_splits(files, options["val_fraction"], options["test_fraction"])
    rejected: list[tuple[str, str, str]] = []  # (reason, rel, detail)
    converted: dict[str, int] = {}
    plan: dict[str, list[tuple[str, str, str]]] = {}
    needs_conversion: set[str] = set()

    def check(rel):
        return images.check_image(
            os.fspath(src / rel),
            min_size=options["min_size"], gray_threshold=options["gray_threshold"],
        )

    inside = [f for f in files if splits_of[f] is not None]
    for rel in files:
        if splits_of[rel] is None:
            rejected.append(("outside_split_folders", rel, "not under train/ val/ validation/ test/"))
    with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        results = pool.map(check, inside)
        for rel, res in tqdm(zip(inside, results), total=len(inside), desc=f"Checking {name}",
                             unit="img", disable=not progress):
            if res.reason is not None:
                rejected.append((res.reason, rel, res.detail))
                continue
            if res.converted_from:
                converted[res.converted_from] = converted.get(res.converted_from, 0) + 1
            if res.reencode:
                needs_conversion.add(rel)
            plan.setdefault(splits_of[rel], []).append((rel, rel, os.fspath(src / rel)))

    late_failures: list[tuple[str, str, str]] = []
    bar = tqdm(total=sum(len(v) for v in plan.values()), desc=f"Writing {name}", unit="img",
               disable=not progress)

    def load(path: str) -> bytes | None:
        # Originals that passed the check are stored as they are; only conversions re-decode.
        rel = Path(os.path.relpath(path, src)).as_posix()
        bar.update(1)
        try:
            if rel not in needs_conversion:
                with open(path, "rb") as f:
                    return f.read()
            res = images.check_image(
                path, min_size=options["min_size"], gray_threshold=options["gray_threshold"],
                want_bytes=True,
            )
        except OSError as e:
            late_failures.append(("unreadable", rel, str(e)))
            return None
        if res.reason is not None:
            late_failures.append((res.reason, rel, res.detail))
            return None
        return res.data

    if not plan:
        bar.close()
        summary = _summarise(rejected)
        raise NoUsableImageError(
            f"No usable image in {src}: {len(files)} image files, all rejected ({summary}). "
            "Check config.data.min_size / config.data.gray_threshold, or the folder."
        )
    tmp = data_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        description = (
            f"Photos of {src}, validated and converted to 8-bit RGB by colorjax "
            f"(python -m colorjax.data.prepare). Options: {json.dumps(options, sort_keys=True)}."
        )
        built = builders.write_dataset(name, tmp, plan, load, description)
        bar.close()
        final = data_dir / name
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built.parent, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rejected += late_failures  # files that changed between the check and the write
    counts = builders.read_info(builders.dataset_dir(data_dir, name))["splits"]
    rejected.sort(key=lambda r: (r[0], r[1]))
    list_path = data_dir / name / REJECTED_LIST
    with open(list_path, "w") as f:
        f.write("reason\tpath\tdetail\n")
        for reason, rel, detail in rejected:
            f.write(f"{reason}\t{rel}\t{detail}\n")
    by_reason: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for reason, rel, detail in rejected:
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if len(examples.setdefault(reason, [])) < _EXAMPLES_SHOWN:
            examples[reason].append(f"{rel} ({detail})" if detail else rel)
    outside = by_reason.pop("outside_split_folders", 0)
    ignored = dict(ignored, outside_split_folders=outside)
    return PrepareReport(
        name=name, src=os.fspath(src), path=os.fspath(builders.dataset_dir(data_dir, name)),
        scanned=len(files), splits={s: counts[s] for s in builders.SPLITS if s in counts},
        rejected=by_reason, examples=examples, converted=converted, ignored=ignored,
        rejected_list=os.fspath(list_path), options=options,
    )


def _summarise(rejected) -> str:
    counts: dict[str, int] = {}
    for reason, _, _ in rejected:
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(f"{r} {n}" for r, n in sorted(counts.items())) or "none"
