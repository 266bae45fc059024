"""Where datasets live, the TFDS builder that writes photo folders, and random-access readers.

A prepared folder is an ordinary TFDS dataset in ``array_record`` format::

    <data_dir>/<name>/1.0.0/{dataset_info.json, features.json, <name>-<split>.array_record-*}

with features ``image`` (8-bit RGB, JPEG or PNG bytes, already validated) and ``path``
(the file's path relative to the source folder). Nothing here needs TensorFlow: images
are handed to TFDS as encoded bytes (which it stores as they are) and read back without
decoding (``tfds.decode.SkipDecoding``); the pipeline decodes them with PIL. Any TFDS user
can read such a dataset with ``tfds.builder_from_directory(path)`` or
``tfds.data_source(name, data_dir=data_dir)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import tensorflow_datasets as tfds

VERSION = "1.0.0"
# Written beside dataset_info.json by prepare; marks datasets that colorjax built.
PREPARE_INFO = "colorjax_prepare.json"
SPLITS = ("train", "validation", "test")


def default_data_dir() -> Path:
    """``$COLORJAX_DATA_DIR``, else ``~/.cache/colorjax/tensorflow_datasets``."""
    env = os.environ.get("COLORJAX_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache/colorjax/tensorflow_datasets"


def tfds_default_data_dir() -> Path:
    """Where TFDS itself prepares datasets: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    env = os.environ.get("TFDS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / "tensorflow_datasets"


def colorjax_data_dir(configured: str | os.PathLike | None) -> Path:
    """The directory colorjax prepares datasets into (``config.data.data_dir`` or default)."""
    return Path(configured).expanduser() if configured else default_data_dir()


def search_dirs(configured: str | os.PathLike | None) -> list[Path]:
    """Directories searched for prepared datasets, in order: colorjax's, then TFDS's own."""
    dirs = [colorjax_data_dir(configured), tfds_default_data_dir()]
    return [d for i, d in enumerate(dirs) if d not in dirs[:i]]


def dataset_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / name / VERSION


def _version_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (-1,)


def find_prepared(name: str, dirs: Iterable[Path]) -> Path | None:
    """Path of a prepared TFDS dataset ``name[/config][:version]`` in one of ``dirs``.

    Looks at files only (``dataset_info.json``), so it needs no builder code: catalog
    datasets whose builders import TensorFlow can still be read once prepared.
    """
    base, _, version = name.partition(":")
    for d in dirs:
        root = Path(d) / base
        if not root.is_dir():
            continue
        versions = [version] if version else sorted(
            (p.name for p in root.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", p.name)),
            key=_version_key, reverse=True,
        )
        for v in versions:
            if (root / v / "dataset_info.json").is_file():
                return root / v
    return None


def list_prepared(dirs: Iterable[Path]) -> list[str]:
    """Names of the datasets prepared in ``dirs`` (``name`` or ``name/config``)."""
    found = set()
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for info in d.glob("*/*/dataset_info.json"):
            found.add(info.parent.parent.name)
        for info in d.glob("*/*/*/dataset_info.json"):
            found.add(f"{info.parent.parent.parent.name}/{info.parent.parent.name}")
    return sorted(found)


def read_info(builder_dir: Path) -> dict:
    """The parts of ``dataset_info.json`` the pipeline needs, without building a builder."""
    info = json.loads((Path(builder_dir) / "dataset_info.json").read_text())
    splits = {s["name"]: sum(int(n) for n in s.get("shardLengths", [])) for s in info.get("splits", [])}
    return {
        "name": info.get("name", ""),
        "file_format": info.get("fileFormat", "tfrecord"),
        "alternative_file_formats": info.get("alternativeFileFormats", []),
        "splits": splits,
    }


def image_features(builder_dir: Path) -> list[str]:
    """Top-level features of a prepared dataset that are images (from features.json)."""
    try:
        spec = json.loads((Path(builder_dir) / "features.json").read_text())
        feats = spec["featuresDict"]["features"]
    except (OSError, ValueError, KeyError):
        return []
    return [k for k, v in feats.items() if v.get("pythonClassName", "").endswith(".Image")]


def has_array_record(info: dict) -> bool:
    return "array_record" in [info["file_format"], *info["alternative_file_formats"]]


# --- writing ---------------------------------------------------------------------------


class _FolderImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Validated photos of one folder. Subclassed per dataset name by ``write_dataset``."""

    VERSION = tfds.core.Version(VERSION)

    # TFDS looks for a checksums file beside the builder's source through
    # importlib_resources, which is not installed; there are no downloads to check anyway.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def __init__(self, *, plan, load, description, **kwargs):
        self._plan = plan  # {split: [(key, relative path, absolute path), ...]}
        self._load = load  # absolute path -> encoded RGB bytes, or None to skip the file
        self._description = description
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self._description,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(None, None, 3)), "path": tfds.features.Text()}
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(files) for split, files in self._plan.items()}

    def _generate_examples(self, files):
        for key, rel, path in files:
            data = self._load(path)
            if data is not None:
                yield key, {"image": data, "path": rel}


def write_dataset(
    name: str,
    data_dir: Path,
    plan: dict[str, Sequence[tuple[str, str, str]]],
    load: Callable[[str], bytes | None],
    description: str,
) -> Path:
    """Write ``plan`` as TFDS dataset ``name`` (array_record) under ``data_dir``; its path."""
    cls = types.new_class(
        "ColorjaxFolder",
        (_FolderImages,),
        {"skip_registration": True},
        lambda ns: ns.update(name=name, __module__=__name__),
    )
    builder = cls(
        plan=plan, load=load, description=description,
        data_dir=os.fspath(data_dir), file_format="array_record",
    )
    was_active = tfds.core.utils.tqdm_utils._active  # noqa: SLF001  our own bar is shown
    tfds.display_progress_bar(False)
    try:
        # TFDS prints "Downloading and preparing..." with a temporary path: not useful here.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(
                download_dir=os.fspath(Path(data_dir) / "downloads"),
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
    finally:
        tfds.display_progress_bar(was_active)
    return Path(builder.data_dir)


# --- reading ---------------------------------------------------------------------------


class ImageBytesSource:
    """Random access to the encoded image bytes of one split (a grain data source).

    Opens the array_record files lazily and drops them when pickled, so it can be sent
    to grain worker processes. ``indices`` restricts (and orders) the records read.
    """

    def __init__(self, builder_dir: Path, split: str, image_key: str = "image",
                 indices: Sequence[int] | None = None):
        self.builder_dir = os.fspath(builder_dir)
        self.split = split
        self.image_key = image_key
        self.indices = None if indices is None else list(indices)
        self._source = None
        # A plain split's size is in dataset_info.json; a slice ('train[:90%]') needs TFDS.
        self._num_records = read_info(Path(builder_dir))["splits"].get(split)
        if self._num_records is None:
            self._num_records = len(self._open())

    def __len__(self) -> int:
        return self._num_records if self.indices is None else len(self.indices)

    def _open(self):
        if self._source is None:
            builder = tfds.builder_from_directory(self.builder_dir)
            self._source = builder.as_data_source(
                split=self.split,
                file_format="array_record",
                decoders={self.image_key: tfds.decode.SkipDecoding()},
            )
        return self._source

    def __getitem__(self, index: int) -> bytes:
        record = self.indices[index] if self.indices is not None else index
        return self._open()[record][self.image_key]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_source"} | {"_source": None}

    def __repr__(self) -> str:
        return f"ImageBytesSource({self.builder_dir!r}, split={self.split!r}, n={len(self)})"
