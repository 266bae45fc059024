"""Semantic interpretability: does an ImageNet classifier recognise the colorized photo?

Zhang, Isola and Efros, "Colorful Image Colorization" (ECCV 2016), section 3.2, fed the
colorized ImageNet validation photos to a VGG classifier trained on colour photos: the better
the colours, the closer its accuracy comes to that on the real photos (and gray inputs score
lower). Here the classifier is the shipped genuine EfficientNet-Lite0
(`colorjax.models.efficientnet`, Tan & Le 2019).

Two forms:

* with ImageNet labels (`labels_from_filenames` on ``<wnid>_<anything>`` file names, e.g. the
  imagenet-samples folder): top-1 / top-5 accuracy, ``si_top1`` / ``si_top5``;
* without labels, against reference photos (the ground truth of the colorized ones):
  ``si_agreement``, the share of images whose top-1 class on the colorized photo equals the
  top-1 class on the reference.

The EfficientNet module carries no class list (its class k is the k-th of the 1000 ImageNet
wnids in sorted order), so `labels_from_filenames` needs the sorted wnids, e.g. from
`wnids_from_folder` on a folder that holds one photo per class.

Images are RGB float (N, H, W, 3) in [0, 1]; the classifier input is 224x224: images of
another size are resized to 224x224 (bilinear, aspect ratio not kept), so callers should
prepare them as ImageNet evaluation does (shorter side 256, centre crop 224).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from colorjax.metrics.distribution import check_images, resize_input, run_batched
from colorjax.models.efficientnet import NUM_CLASSES, efficientnet_logits, load_efficientnet_lite0

__all__ = ["WNID_PATTERN", "wnids_from_folder", "labels_from_filenames", "classify",
           "semantic_interpretability"]

# An ImageNet synset id at the start of a file name: "n01440764_tench.JPEG".
WNID_PATTERN = re.compile(r"^(n\d{8})_")


def _wnid(name: str) -> str | None:
    match = WNID_PATTERN.match(name)
    return match.group(1) if match else None


def wnids_from_folder(folder: str | Path) -> list[str]:
    """The sorted unique wnids of the ``<wnid>_<anything>`` file names in `folder`; a
    ValueError unless there are exactly 1000 (the classifier's classes)."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"wnids_from_folder: {path} is not a directory")
    wnids = sorted({w for f in path.iterdir() if f.is_file() and (w := _wnid(f.name))})
    if len(wnids) != NUM_CLASSES:
        raise ValueError(f"wnids_from_folder: expected the {NUM_CLASSES} ImageNet wnids in the "
                         f"file names of {path} (<wnid>_<anything>), found {len(wnids)}")
    return wnids


def labels_from_filenames(paths: Iterable[str | Path], wnids: Sequence[str]) -> np.ndarray:
    """ImageNet class index (int64, shape (N,)) of each ``<wnid>_<anything>`` file name: the
    position of its wnid among `wnids`, the sorted list of the 1000 ImageNet wnids."""
    if wnids is None:
        raise ValueError("labels_from_filenames needs `wnids`, the sorted 1000 ImageNet wnids "
                         "(the classifier has no class list); see wnids_from_folder")
    wnids = list(wnids)
    if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES or wnids != sorted(wnids):
        raise ValueError(f"wnids must be the {NUM_CLASSES} distinct ImageNet wnids in sorted "
                         f"order, got {len(wnids)} (distinct {len(set(wnids))}, sorted "
                         f"{wnids == sorted(wnids)})")
    index = {w: i for i, w in enumerate(wnids)}
    labels = []
    for p in paths:
        name = Path(p).name
        w = _wnid(name)
        if w is None:
            raise ValueError(f"labels_from_filenames: {name!r} does not start with a wnid "
                             "(<wnid>_<anything>, e.g. n01440764_tench.JPEG)")
        if w not in index:
            raise ValueError(f"labels_from_filenames: the wnid {w} of {name!r} is not in wnids")
        labels.append(index[w])
    return np.asarray(labels, np.int64)


@jax.jit
def _logits(variables: Any, rgb: jax.Array) -> jax.Array:
    return efficientnet_logits(variables, resize_input(rgb))


def classify(rgb: Any, batch_size: int = 32) -> np.ndarray:
    """EfficientNet-Lite0 ImageNet logits (N, 1000), float32, of RGB images in [0, 1]
    (resized to 224x224 bilinear unless already that size; normalised as
    `efficientnet.normalize`). Class k is the k-th of the sorted 1000 wnids."""
    x = check_images(rgb)
    return run_batched(_logits, load_efficientnet_lite0(), x, batch_size).astype(np.float32)


def semantic_interpretability(rgb: Any, labels: Any = None, reference_rgb: Any = None,
                              batch_size: int = 32) -> dict:
    """How well EfficientNet-Lite0 recognises the images `rgb`.

    With `labels` (N,) ImageNet class indices: {"si_top1", "si_top5", "num_images"}, the
    top-1 / top-5 accuracies on `rgb`. With `reference_rgb` (N photos, e.g. the ground truth):
    {"si_agreement", "num_images"}, the share of images whose top-1 class on `rgb` equals that
    on `reference_rgb`. With both, all four keys; with neither, a ValueError.
    """
    if labels is None and reference_rgb is None:
        raise ValueError("semantic_interpretability needs `labels` (ImageNet class indices) or "
                         "`reference_rgb` (photos to agree with)")
    x = check_images(rgb)
    n = x.shape[0]
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be {n} integer class indices (shape ({n},)), got "
                             f"dtype {y.dtype} shape {y.shape}")
        if np.any((y < 0) | (y >= NUM_CLASSES)):
            raise ValueError(f"labels must lie in [0, {NUM_CLASSES}), got {y.min()}..{y.max()}")
    ref = None
    if reference_rgb is not None:
        ref = check_images(reference_rgb, "reference_rgb")
        if ref.shape[0] != n:
            raise ValueError(f"reference_rgb has {ref.shape[0]} images, rgb has {n}")
    logits = classify(x, batch_size)
    out: dict = {"num_images": int(n)}
    if y is not None:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        out["si_top1"] = float(np.mean(top5[:, 0] == y))
        out["si_top5"] = float(np.mean(np.any(top5 == y[:, None], axis=1)))
    if ref is not None:
        # The same array object as `rgb` (e.g. a check of the truth against itself) is not
        # classified twice.
        ref_logits = logits if reference_rgb is rgb else classify(ref, batch_size)
        ref_top1 = np.argmax(ref_logits, axis=1)
        out["si_agreement"] = float(np.mean(np.argmax(logits, axis=1) == ref_top1))
    return out
