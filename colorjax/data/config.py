"""``config.data``: the defaults, and checks of each field that name the field when it is wrong."""

from __future__ import annotations

import difflib
import math

import ml_collections

from colorjax.config import checks

# Chosen from ../shared/data/imagenet-samples (see colorjax/data/README.md): its three
# gray photos stored as RGB measure 0.00, 0.01 and 0.27 levels; the least colourful
# real colour photo (a brown beetle on a gray card) measures 2.66. 1.0 sits between.
DEFAULT_GRAY_THRESHOLD = 1.0
DEFAULT_MIN_SIZE = 32


def default_data_config() -> ml_collections.ConfigDict:
    """Defaults of ``config.data``; every field is described beside it."""
    c = ml_collections.ConfigDict()
    # -- what to read ---------------------------------------------------------------------
    # 'colorjax_demo' (built-in, offline), a folder dataset made by
    # `python -m colorjax.data.prepare --name=...`, or a TFDS catalog name such as
    # 'imagenette/160px' prepared in array_record format.
    c.name = "colorjax_demo"
    # A folder of photos ('' = none). Wins over `name`; prepared on first use into
    # data_dir and prepared again only when the folder's files change.
    c.folder = ""
    # Where datasets are prepared ('' = $COLORJAX_DATA_DIR or
    # ~/.cache/colorjax/tensorflow_datasets). Names are looked up here first, then in
    # TFDS's own data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets).
    c.data_dir = ""
    # Evaluation data, when it differs from the training data ('' = same as name/folder).
    c.eval_name = ""
    c.eval_folder = ""
    # Train on several sources mixed with weights ('' = off): 'SOURCE[=WEIGHT],...', e.g.
    # '../shared/data/imagenet-samples=2,../shared/data/flowers224=1,my_prepared_name'.
    # SOURCE is a folder (an existing directory; prepared like `folder`) or a dataset name
    # as `name` accepts; WEIGHT a number > 0 (default 1). Each source's train_split is
    # read, reshuffled every epoch, and the sources interleaved in proportion to their
    # weights. Replaces name/folder for training only: evaluation still reads
    # eval_name/eval_folder (else name/folder). For num_epochs, an epoch is the sum of the
    # sources' images. SOURCE cannot contain ',' or '='.
    c.mixture = ""
    # Split names are TFDS's: 'train', 'validation', 'test' (a folder's val/ subfolder is
    # 'validation'); slices such as 'train[:90%]' work too. The eval split is the
    # loop's config.eval.split.
    c.train_split = "train"
    # Feature holding the image in TFDS catalog datasets.
    c.image_key = "image"
    # Let TFDS download and prepare a catalog dataset that is not prepared yet (needs
    # internet, and TensorFlow for most builders: pip install 'colorjax[tensorflow]').
    c.download = False
    # -- what the model sees --------------------------------------------------------------
    c.image_size = 64  # S: batches are (b, S, S, 1) L and (b, S, S, 2) ab
    # Train images are resized so their shorter side is this, then cropped to S
    # (0 = image_size). Eval images: shorter side to S, then the center S x S crop.
    c.resize_shorter_to = 0
    c.random_crop = True  # train: random crop position (False: center crop)
    c.hflip = True  # train: horizontal flip with probability 1/2
    # Train: mirror the truth's a channel (red <-> green; b, yellow <-> blue, is kept) with
    # this probability. 0.5 when the photos cannot teach which things are red and which
    # green (the six demo photos are mostly orange): the model then learns a ~ 0 for them.
    c.mirror_a = 0.0
    # Train: scale the truth's ab by a factor drawn uniformly from [this, 1] per image
    # (1 = off). Below 1 the model claims less colour than it saw, which keeps its guesses
    # on unfamiliar photos nearer the truth (docs/results.md, the demo model).
    c.min_chroma_scale = 1.0
    # Decode JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) when that still covers
    # the target size: several times faster for large photos, visually the same.
    c.jpeg_draft = True
    # -- order and speed -------------------------------------------------------------------
    c.shuffle = True  # train: global shuffle, reshuffled every epoch
    c.shuffle_seed = -1  # -1 or None: the run's seed; also seeds the augmentations
    c.workers = 0  # grain worker processes (0 = all in the training process)
    c.worker_buffer = 2  # batches each worker prepares ahead
    c.read_threads = 2  # threads per process (or worker) preparing batches
    c.prefetch = 2  # batches prepared ahead by those threads
    # Data processes keep freed memory for reuse (glibc mallopt) instead of page-faulting
    # every image's arrays in again: ~15% less CPU per image at 256 px (colorjax/data/allocator.py).
    c.keep_freed_memory = True
    # -- preparing folders (part of a prepared folder's cache key) ------------------------
    # Smallest accepted shorter side, in pixels, at prepare time; smaller files are
    # rejected as 'too_small' (upscaling them would teach blur).
    c.min_size = DEFAULT_MIN_SIZE
    # Near-gray limit: a colour file is rejected as 'near_gray' when the mean over its
    # pixels of max(R,G,B) - min(R,G,B), in 8-bit levels (0..255), is below this.
    c.gray_threshold = DEFAULT_GRAY_THRESHOLD
    # Hash-split fractions for folders without train/ val/ test/ subfolders.
    c.val_fraction = 0.1
    c.test_fraction = 0.0
    return c


_FIELD = "config.data."


def fill_defaults(data_config) -> ml_collections.ConfigDict:
    """``data_config`` over the defaults; unknown fields are an error (usually a typo)."""
    cfg = default_data_config()
    given = dict(data_config.items()) if hasattr(data_config, "items") else dict(data_config)
    unknown = sorted(set(given) - set(cfg.keys()))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(cfg.keys()), n=1, cutoff=0.0)
        hint = f" (closest known field: {_FIELD}{close[0]})" if close else ""
        raise checks.ConfigError(f"{_FIELD}{unknown[0]}", f"no such field{hint}",
                                 f"the fields of config.data: {', '.join(sorted(cfg.keys()))}")
    # A fresh ConfigDict: assigning into the defaults would raise TypeError on a type
    # change (e.g. a string image_size) before check_fields can name the field.
    return ml_collections.ConfigDict({**cfg.to_dict(), **given})


_MIXTURE_SYNTAX = ("'SOURCE[=WEIGHT]' entries separated by commas; SOURCE a folder or a "
                   "dataset name, WEIGHT a number > 0 (default 1)")


def parse_mixture(text: str) -> list[tuple[str, float]]:
    """``config.data.mixture`` as [(source, weight), ...]; [] when it is ''. No file access."""
    if not text.strip():
        return []
    out = []
    for i, entry in enumerate(text.split(",")):
        source, eq, weight = (part.strip() for part in entry.partition("="))
        where = f"entry {i + 1} {entry.strip()!r}"
        if not source:
            raise checks.ConfigError(f"{_FIELD}mixture", f"{where} names no source "
                                     f"(in {text!r})", _MIXTURE_SYNTAX)
        try:
            w = float(weight) if eq else 1.0
        except ValueError:
            w = None
        if w is None or not math.isfinite(w) or w <= 0:
            raise checks.ConfigError(f"{_FIELD}mixture", f"{where}: the weight {weight!r} "
                                     "is not a number > 0", _MIXTURE_SYNTAX)
        out.append((source, w))
    return out


def check_fields(data_config) -> ml_collections.ConfigDict:
    """Type and range checks of every field (no file access). Returns the filled config."""
    cfg = fill_defaults(data_config)
    tree = {"data": cfg}  # so that every check names its field config.data.<key>
    for key in ("name", "folder", "data_dir", "eval_name", "eval_folder", "train_split",
                "image_key", "mixture"):
        if cfg[key] is None:
            with cfg.unlocked():
                cfg[key] = ""
        checks.string(tree, f"data.{key}")
    if not cfg.name and not cfg.folder:
        raise checks.ConfigError(
            f"{_FIELD}name", f"'' is not allowed while {_FIELD}folder is not set",
            "a dataset name (e.g. 'colorjax_demo'), or set a folder of photos")
    parse_mixture(cfg.mixture)
    for key in ("random_crop", "hflip", "jpeg_draft", "shuffle", "download",
                "keep_freed_memory"):
        checks.boolean(tree, f"data.{key}")
    checks.integer(tree, "data.image_size", 8, 4096)
    checks.number(tree, "data.mirror_a", 0.0, 1.0, note="(a probability)")
    checks.number(tree, "data.min_chroma_scale", 0.0, 1.0)
    if cfg.resize_shorter_to != 0:
        checks.integer(tree, "data.resize_shorter_to", cfg.image_size,
                       note=f"(config.data.image_size={cfg.image_size}), or 0 for image_size")
    checks.integer(tree, "data.workers", 0, 256)
    checks.integer(tree, "data.worker_buffer", 1, 1024)
    checks.integer(tree, "data.read_threads", 0, 256)
    checks.integer(tree, "data.prefetch", 0, 1024)
    checks.integer(tree, "data.min_size", 1)
    checks.number(tree, "data.gray_threshold", 0.0, 255.0)
    checks.number(tree, "data.val_fraction", 0.0, 1.0, high_open=True)
    checks.number(tree, "data.test_fraction", 0.0, 1.0, high_open=True)
    if cfg.val_fraction + cfg.test_fraction >= 1.0:
        raise checks.ConfigError(
            f"{_FIELD}val_fraction", f"{cfg.val_fraction} + {_FIELD}test_fraction "
            f"{cfg.test_fraction} is not allowed", "a sum below 1")
    if cfg.shuffle_seed is not None:
        checks.integer(tree, "data.shuffle_seed", -1, 2**32, high_open=True,
                       note="(-1 for the run's seed), or None")
    return cfg
