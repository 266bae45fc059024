"""Which data a config names: a photo folder, the built-in demo, a prepared dataset or a TFDS
catalog name, resolved to a prepared TFDS split (prepared first on process 0 where it
must be), with errors that name the field and what is available.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import jax

from colorjax.platform import parallel
from colorjax.media import photos
from colorjax.config.checks import ConfigError
from colorjax.data import builders, demo, folder
from colorjax.data.config import check_fields, parse_mixture

_PREPARE_CMD = "python -m colorjax.data.prepare --src=DIR --name=NAME"


@dataclass(frozen=True)
class Resolved:
    """A dataset named by the config, located (and prepared, when asked)."""

    field: str  # the config field that named it, for error messages
    label: str  # e.g. "folder /data/photos", "colorjax_demo", "imagenette/160px"
    builder_dir: Path | None  # None until prepared
    splits: tuple[str, ...]  # splits it has (or will have once prepared)
    image_key: str = "image"


def _data_fields(cfg, for_eval: bool) -> tuple[str, str]:
    if for_eval and (cfg.eval_folder or cfg.eval_name):
        return "eval_folder", "eval_name"
    return "folder", "name"


def _folder_splits(path: Path, cfg) -> tuple[str, ...]:
    """Splits a folder will have, from its top-level subfolders alone (cheap)."""
    subs = {p.name.lower() for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")}
    named = {folder.SPLIT_FOLDERS[s] for s in subs & folder.SPLIT_FOLDERS.keys()}
    if named:
        return tuple(s for s in builders.SPLITS if s in named)
    out = ["train"]
    if cfg.val_fraction > 0:
        out.append("validation")
    if cfg.test_fraction > 0:
        out.append("test")
    return tuple(out)


def _available(cfg) -> str:
    names = set(builders.list_prepared(builders.search_dirs(cfg.data_dir))) | {demo.NAME}
    return ", ".join(sorted(names))


def _not_found(cfg, field: str, name: str) -> ValueError:
    dirs = ", ".join(os.fspath(d) for d in builders.search_dirs(cfg.data_dir))
    use_folder = ("A mixture entry is an existing folder of photos or a dataset name; "
                  "check the path, or" if field == "mixture" else
                  "To use a folder of photos set config.data.folder=DIR, or")
    what = "no such folder or dataset" if field == "mixture" else "no such dataset"
    return ConfigError(
        f"config.data.{field}", f"{name!r}: {what}. Available: {_available(cfg)} "
        f"(prepared in {dirs}; TFDS catalog names prepared in array_record format are "
        f"found there too). {use_folder} "
        f"prepare it once: {_PREPARE_CMD} [--data_dir=...]."
    )


def _catalog_help(name: str, data_dir: Path) -> str:
    base = name.split(":")[0]
    return (
        f"Prepare it once, on a machine with internet access:\n"
        f"  pip install 'colorjax[tensorflow]'   # most TFDS builders (cifar10, imagenette, "
        f"coco, ...) use TensorFlow while preparing; reading does not\n"
        f"  python -c \"import tensorflow_datasets as tfds; tfds.builder('{base}', "
        f"data_dir='{data_dir}').download_and_prepare(file_format='array_record')\"\n"
        f"then copy {data_dir}/{base.split('/')[0]} to this machine's data dir "
        f"(config.data.data_dir), or set config.data.download=True to let training do it."
    )


def _process_0_first(prepare):
    """Run ``prepare`` on process 0 while the others wait, then on the others.

    With a data dir that all processes share, the others then find process 0's dataset
    (prepare is cached, and locked against concurrent runs); with a data dir per host,
    each host prepares its own copy. Process 0 alone prints the report either way.
    """
    if jax.process_count() == 1:
        return prepare()
    if jax.process_index() != 0:
        parallel.barrier("colorjax: process 0 prepared the data")
        return prepare()  # a failure of process 0 fails here too, with the same message
    try:
        return prepare()
    finally:  # also on failure: the others must not wait for ever
        parallel.barrier("colorjax: process 0 prepared the data")


def resolve(cfg, *, for_eval: bool = False, prepare: bool = False) -> Resolved:
    """Find the train (or eval) dataset of a checked config; prepare it if ``prepare``.

    The training data of a config with ``mixture`` set is several: see ``resolve_mixture``.
    """
    folder_field, name_field = _data_fields(cfg, for_eval)
    return _resolve(cfg, cfg[folder_field], cfg[name_field], folder_field, name_field, prepare)


def resolve_mixture(cfg, *, prepare: bool = False) -> list[tuple[Resolved, float]]:
    """The sources of ``config.data.mixture`` with their weights: an entry naming an
    existing directory is a folder (prepared like ``config.data.folder``), any other a
    dataset name as ``config.data.name`` accepts; errors name ``config.data.mixture``."""
    out, seen = [], {}
    for i, (source, weight) in enumerate(parse_mixture(cfg.mixture), 1):
        is_dir = Path(source).expanduser().is_dir()
        # One source twice would be read as two, each with its own shuffle: say so instead.
        key = ("folder", Path(source).expanduser().resolve()) if is_dir else ("name", source)
        if key in seen:
            j, first = seen[key]
            raise ConfigError(
                "config.data.mixture", f"entry {i} {source!r} names the same source as "
                f"entry {j} {first!r} (in {cfg.mixture!r})",
                "each source once; give it a larger weight instead")
        seen[key] = (i, source)
        res = _resolve(cfg, source if is_dir else "", "" if is_dir else source,
                       "mixture", "mixture", prepare)
        out.append((res, weight))
    return out


def _resolve(cfg, folder_value: str, name: str, folder_field: str, name_field: str,
             prepare: bool) -> Resolved:
    if folder_value:
        path = Path(folder_value).expanduser()
        if not path.is_dir():
            raise ConfigError(f"config.data.{folder_field}", f"{folder_value!r} is not a folder.")
        label = f"folder {path.resolve()}"
        if not prepare:
            if not folder.has_photo(path):
                raise ConfigError(
                    f"config.data.{folder_field}", f"{folder_value!r} holds no photos (no "
                    "file named *" + ", *".join(sorted(photos.IMAGE_EXTENSIONS)) + " in it "
                    "or its subfolders, hidden ones aside)", "a folder of photos")
            return Resolved(folder_field, label, None, _folder_splits(path, cfg))
        try:
            report = _process_0_first(lambda: folder.prepare_folder(
                path, data_dir=cfg.data_dir or None, val_fraction=cfg.val_fraction,
                test_fraction=cfg.test_fraction, min_size=cfg.min_size,
                gray_threshold=cfg.gray_threshold, progress=jax.process_index() == 0,
            ))
        except folder.NoUsableImageError as e:  # every photo rejected: the config's mistake
            raise ConfigError(f"config.data.{folder_field}", f"{folder_value!r}: {e}") from None
        if not report.cached and jax.process_index() == 0:
            print(report, flush=True)
        return Resolved(folder_field, label, Path(report.path), tuple(report.splits))
    if name == demo.NAME:
        if not prepare:
            return Resolved(name_field, name, None, ("train", "validation"))
        report = _process_0_first(
            lambda: demo.prepare_demo(cfg.data_dir or None, progress=jax.process_index() == 0))
        return Resolved(name_field, name, Path(report.path), tuple(report.splits))
    found = builders.find_prepared(name, builders.search_dirs(cfg.data_dir))
    if found is not None:
        info = builders.read_info(found)
        if not builders.has_array_record(info):
            raise ConfigError(
                f"config.data.{name_field}", f"{name!r} is prepared at {found} in "
                f"{info['file_format']} format, which grain cannot read. Prepare it again with "
                f"file_format='array_record', or convert it: tfds convert_format "
                f"--dataset_version_dir={found} --out_file_format=array_record"
            )
        key = "image" if (found.parent / builders.PREPARE_INFO).exists() else cfg.image_key
        available = builders.image_features(found)
        if available and key not in available:
            raise ConfigError(
                "config.data.image_key", f"{key!r}: {name} has no such image feature; its image "
                f"features: {', '.join(available)}."
            )
        return Resolved(name_field, name, found, tuple(info["splits"]), key)
    import tensorflow_datasets as tfds  # noqa: PLC0415

    base = name.split(":")[0].split("/")[0]
    if base not in tfds.list_builders(with_community_datasets=False):
        raise _not_found(cfg, name_field, name)
    data_dir = builders.colorjax_data_dir(cfg.data_dir)
    if not cfg.download:
        raise ConfigError(
            f"config.data.{name_field}", f"{name!r} is a TFDS catalog dataset that is not prepared "
            f"(array_record) in {', '.join(map(os.fspath, builders.search_dirs(cfg.data_dir)))}.\n"
            + _catalog_help(name, data_dir)
        )
    if not prepare:
        return Resolved(name_field, name, None, (), cfg.image_key)
    try:
        builder = tfds.builder(name, data_dir=os.fspath(data_dir))
        builder.download_and_prepare(file_format="array_record")
    except Exception as e:  # noqa: BLE001  no network, no TensorFlow, manual download...
        raise ConfigError(
            f"config.data.{name_field}", f"{name!r}: TFDS could not download and prepare it "
            f"({type(e).__name__}: {e}).\n" + _catalog_help(name, data_dir)
        ) from e
    found = Path(builder.data_dir)
    return Resolved(name_field, name, found, tuple(builders.read_info(found)["splits"]), cfg.image_key)


def _check_split(res: Resolved, split: str, field: str) -> None:
    """ConfigError (a ValueError, reported by the CLI in one line) when `res` lacks `split`."""
    base = re.sub(r"\[.*\]$", "", split)  # TFDS slicing such as 'train[:90%]' is allowed
    if res.splits and base not in res.splits:
        if res.field == "mixture":
            raise ConfigError(
                "config.data.mixture", f"the source {res.label} has no split {base!r} "
                f"({field}={split!r}); its splits: {', '.join(res.splits)}.")
        hint = ""
        if res.splits == ("train",) and res.label.startswith("folder"):
            hint = (" (a folder without split subfolders holds back config.data.val_fraction "
                    "of its photos as 'validation'; this one had too few, or the fraction is "
                    "0: add a validation/ subfolder, or evaluate on 'train')")
        raise ConfigError(field, f"{split!r} is not a split of {res.label} "
                                 f"(config.data.{res.field}){hint}", allowed=list(res.splits))


def validate_data_config(data_config, split: str | None = None):
    """Check ``config.data`` before anything heavy; raises ValueError naming the bad field.

    Checks every field, that the training data exists and has ``train_split`` and, when
    ``split`` is given, that the evaluation data (``eval_name``/``eval_folder``, else the
    training data) has that split. Does not prepare anything. Returns the filled config.
    """
    cfg = check_fields(data_config)
    for res in ([r for r, _ in resolve_mixture(cfg)] if cfg.mixture else [resolve(cfg)]):
        _check_split(res, cfg.train_split, "config.data.train_split")
    if split is not None:
        _check_split(resolve(cfg, for_eval=True), split, "config.eval.split")
    return cfg


def open_split(cfg, split: str, for_eval: bool, split_field: str) -> builders.ImageBytesSource:
    res = resolve(cfg, for_eval=for_eval, prepare=True)
    _check_split(res, split, split_field)
    return builders.ImageBytesSource(res.builder_dir, split, res.image_key)


def open_mixture(cfg, split: str, split_field: str) -> list[tuple[Resolved, builders.ImageBytesSource, float]]:
    """Each source of ``config.data.mixture`` (prepared), its ``split`` and its weight."""
    out = []
    for res, weight in resolve_mixture(cfg, prepare=True):
        _check_split(res, split, split_field)
        out.append((res, builders.ImageBytesSource(res.builder_dir, split, res.image_key), weight))
    return out


def num_examples(data_config, split: str, for_eval: bool = False) -> int:
    """Images in ``split`` of the training data (or of the eval data), over all processes.

    For a mixture (training data only): the sum over its sources, which is what an epoch
    (``config.num_epochs``) of a mixture means.
    """
    cfg = check_fields(data_config)
    if cfg.mixture and not for_eval:
        return sum(len(src) for _, src, _ in open_mixture(cfg, split, "split"))
    return len(open_split(cfg, split, for_eval, "config.eval.split" if for_eval else "split"))
