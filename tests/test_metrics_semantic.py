"""Tests for colorjax.metrics.semantic: EfficientNet-Lite0 recognises the real colour
ImageNet sample photos better than their gray versions (the semantic-interpretability test
of Zhang et al. 2016), and the label / argument handling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import IMAGENET_SAMPLES, imagenet_color_photos

from colorjax.color import lab_to_rgb, rgb_to_lab
from colorjax.metrics import semantic as sem

SAMPLES = IMAGENET_SAMPLES
SUBSET_STEP = 8  # every 8th of the 1000 sorted photos (one per class): 125 files


def _gray(rgb: np.ndarray) -> np.ndarray:
    """L only: CIELAB with a = b = 0, back to sRGB (colorjax.color)."""
    lab = rgb_to_lab(rgb)
    lab[..., 1:] = 0.0
    return lab_to_rgb(lab)


@pytest.fixture(scope="module")
def color_samples():
    images, kept = imagenet_color_photos(SUBSET_STEP)
    return images, sem.labels_from_filenames(kept, sem.wnids_from_folder(SAMPLES)), kept


@pytest.mark.slow
def test_truth_is_recognised_better_than_gray(color_samples):
    images, labels, files = color_samples
    assert len(images) > 100
    # Labels: the wnid's position among the sorted wnids (as tests/test_efficientnet.py).
    assert labels[0] == sorted({f.name.split("_")[0] for f in SAMPLES.glob("*.JPEG")}).index(
        files[0].name.split("_")[0])
    t0 = time.perf_counter()
    truth = sem.semantic_interpretability(images, labels, reference_rgb=images)
    gray_images = _gray(images)
    gray = sem.semantic_interpretability(gray_images, labels)
    print(f"SI on {len(images)} colour ImageNet samples: truth top-1 {truth['si_top1']:.3f} "
          f"top-5 {truth['si_top5']:.3f}; gray (L only) top-1 {gray['si_top1']:.3f} "
          f"top-5 {gray['si_top5']:.3f} ({time.perf_counter() - t0:.1f}s)")
    assert set(truth) == {"si_top1", "si_top5", "si_agreement", "num_images"}
    assert truth["num_images"] == gray["num_images"] == len(images)
    assert truth["si_agreement"] == 1.0
    assert truth["si_top5"] >= truth["si_top1"] and gray["si_top5"] >= gray["si_top1"]
    assert truth["si_top1"] > 0.5  # chance is 0.001
    assert truth["si_top1"] > gray["si_top1"] + 0.05
    assert set(gray) == {"si_top1", "si_top5", "num_images"}  # labels only: just those keys
    # Reference only (a copy, so it is classified): just those keys. On the first 32 photos
    # the gray versions' top-1 often differs from the truth's.
    only_ref = sem.semantic_interpretability(gray_images[:32], reference_rgb=images[:32].copy())
    assert set(only_ref) == {"si_agreement", "num_images"} and only_ref["num_images"] == 32
    assert 0.0 < only_ref["si_agreement"] < 1.0


@pytest.mark.slow
def test_classify_shapes_resize_and_batching(color_samples):
    images = color_samples[0][:3]
    logits = sem.classify(images, batch_size=2)
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits, sem.classify(images, batch_size=3), rtol=1e-4, atol=1e-3)
    # Another size is resized to 224 inside.
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)[:, :300, :320]
    assert sem.classify(big).shape == (3, 1000)


def test_wnids_and_labels_from_filenames(tmp_path):
    wnids = [f"n{i:08d}" for i in range(1000)]
    for w in wnids:
        (tmp_path / f"{w}_thing.JPEG").touch()
    (tmp_path / "README.txt").touch()
    assert sem.wnids_from_folder(tmp_path) == wnids
    labels = sem.labels_from_filenames([tmp_path / "n00000005_x.JPEG", "a/b/n00000999_y.png",
                                        "n00000000_z"], wnids)
    assert labels.tolist() == [5, 999, 0] and labels.dtype == np.int64
    with pytest.raises(ValueError, match="does not start with a wnid"):
        sem.labels_from_filenames(["tench.JPEG"], wnids)
    with pytest.raises(ValueError, match="not in wnids"):
        sem.labels_from_filenames(["n99999999_x.JPEG"], wnids)
    with pytest.raises(ValueError, match="sorted"):
        sem.labels_from_filenames(["n00000005_x.JPEG"], wnids[::-1])
    with pytest.raises(ValueError, match="needs `wnids`"):
        sem.labels_from_filenames(["n00000005_x.JPEG"], None)
    (tmp_path / "n00000000_thing.JPEG").unlink()
    with pytest.raises(ValueError, match="found 999"):
        sem.wnids_from_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        sem.wnids_from_folder(tmp_path / "absent")


def test_semantic_interpretability_errors():
    x = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="needs `labels`.*or `reference_rgb`"):
        sem.semantic_interpretability(x)
    with pytest.raises(ValueError, match="labels must be 2 integer"):
        sem.semantic_interpretability(x, labels=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="labels must be 2 integer"):
        sem.semantic_interpretability(x, labels=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1000\)"):
        sem.semantic_interpretability(x, labels=np.array([0, 1000]))
    with pytest.raises(ValueError, match="reference_rgb has 1 images, rgb has 2"):
        sem.semantic_interpretability(x, reference_rgb=x[:1])
    with pytest.raises(ValueError, match=r"reference_rgb must be RGB images"):
        sem.semantic_interpretability(x, reference_rgb=x[..., :1])
    with pytest.raises(ValueError, match=r"rgb must be RGB images"):
        sem.classify(np.zeros((0, 8, 8, 3)))
