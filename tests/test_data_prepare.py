"""Preparing folders: bad files are counted by reason, splits are stable, results are cached."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from colorjax.data import folder, images, prepare_folder
from test_data_fixtures import (
    EXPECTED_CONVERTED, EXPECTED_REJECTED, NUM_GOOD, make_messy_folder, make_plain_folder,
)

REPO = Path(__file__).resolve().parents[1]


def _paths(report, split):
    src = tfds.builder_from_directory(report.path).as_data_source(split=split)
    return [src[i]["path"].decode() for i in range(len(src))]


def test_messy_folder_counts_every_reason_and_keeps_converted(tmp_path):
    src = make_messy_folder(tmp_path / "photos")
    report = prepare_folder(src, "messy", tmp_path / "tfds", min_size=20, val_fraction=0.0,
                            progress=False)
    assert report.rejected == EXPECTED_REJECTED
    assert report.converted == EXPECTED_CONVERTED
    assert report.splits == {"train": NUM_GOOD + len(EXPECTED_CONVERTED)}
    assert report.ignored["hidden_files"] == 1
    assert report.ignored["files_with_other_extensions"] == 1
    assert report.examples["grayscale"] == ["gray16.png (mode I;16)", "gray_L.png (mode L)"]
    text = str(report)
    for reason in EXPECTED_REJECTED:
        assert reason in text
    assert "truncated.jpg" in text
    assert "notes.jpg" in text
    listed = Path(report.rejected_list).read_text().splitlines()
    assert listed[0] == "reason\tpath\tdetail"
    assert len(listed) == 1 + sum(EXPECTED_REJECTED.values())
    # Everything stored is 8-bit RGB, including the converted files; nested paths are kept.
    ds = tfds.builder_from_directory(report.path).as_data_source(split="train")
    stored = {}
    for i in range(len(ds)):
        ex = ds[i]
        assert ex["image"].dtype == np.uint8
        assert ex["image"].shape == (24, 24, 3)
        stored[ex["path"].decode()] = ex["image"]
    assert "trip/day2/good_2.bmp" in stored
    assert "trip/alpha.png" in stored
    assert "deep.png" in stored
    # 16-bit channels are reduced to their high byte, not clipped.
    assert np.abs(stored["deep.png"].astype(int) - np.asarray(Image.open(src / "deep.png"))).max() <= 1


def test_prepare_is_cached_until_the_folder_changes(tmp_path):
    src = make_plain_folder(tmp_path / "p", 6)
    first = prepare_folder(src, "cache_me", tmp_path / "tfds", progress=False)
    assert not first.cached
    again = prepare_folder(src, "cache_me", tmp_path / "tfds", progress=False)
    assert again.cached
    assert again.splits == first.splits
    make_plain_folder(src, 1, start=50)
    changed = prepare_folder(src, "cache_me", tmp_path / "tfds", progress=False)
    assert not changed.cached
    assert changed.scanned == 7
    other_options = prepare_folder(src, "cache_me", tmp_path / "tfds", min_size=8, progress=False)
    assert not other_options.cached


def test_hash_split_is_deterministic_and_stable_when_photos_are_added(tmp_path):
    src = make_plain_folder(tmp_path / "p", 40)
    before = prepare_folder(src, "stable", tmp_path / "tfds", val_fraction=0.3,
                            test_fraction=0.2, progress=False)
    assert set(before.splits) == {"train", "validation", "test"}
    splits_before = {p: s for s in before.splits for p in _paths(before, s)}
    assert splits_before == {
        p: folder.hash_split(p, 0.3, 0.2) for p in splits_before
    }
    make_plain_folder(src, 15, start=40)
    after = prepare_folder(src, "stable", tmp_path / "tfds", val_fraction=0.3,
                           test_fraction=0.2, progress=False)
    splits_after = {p: s for s in after.splits for p in _paths(after, s)}
    assert len(splits_after) == 55
    assert {p: splits_after[p] for p in splits_before} == splits_before


def test_split_subfolders_are_used_and_val_means_validation(tmp_path):
    src = tmp_path / "p"
    make_plain_folder(src / "train", 5)
    make_plain_folder(src / "val", 3, start=10)
    make_plain_folder(src / "Test", 2, start=20)
    make_plain_folder(src / "extra", 1, start=30)  # outside the split folders: ignored
    report = prepare_folder(src, "layout", tmp_path / "tfds", progress=False)
    assert report.splits == {"train": 5, "validation": 3, "test": 2}
    assert report.ignored["outside_split_folders"] == 1
    assert all(p.startswith("val/") for p in _paths(report, "validation"))


def test_names_are_checked(tmp_path):
    src = make_plain_folder(tmp_path / "p", 2)
    with pytest.raises(ValueError, match="not a valid dataset name"):
        prepare_folder(src, "My Photos", tmp_path / "tfds", progress=False)
    with pytest.raises(ValueError, match="TFDS catalog"):
        prepare_folder(src, "cifar10", tmp_path / "tfds", progress=False)
    with pytest.raises(ValueError, match="not a folder"):
        prepare_folder(tmp_path / "nope", "x", tmp_path / "tfds", progress=False)
    assert folder.default_name(src).startswith("p_")


def test_nothing_usable_is_an_error_that_says_why(tmp_path):
    src = tmp_path / "p"
    src.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(src / "gray.png")
    with pytest.raises(ValueError, match="grayscale 1"):
        prepare_folder(src, "empty", tmp_path / "tfds", progress=False)


def test_chroma_level_units():
    gray = np.full((10, 10, 3), 128, np.uint8)
    assert images.chroma_level(gray) == 0.0
    red = gray.copy()
    red[..., 0] = 138
    assert images.chroma_level(red) == pytest.approx(10.0)


def test_cli_prints_the_report(tmp_path):
    src = make_messy_folder(tmp_path / "photos")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-m", "colorjax.data.prepare", f"--src={src}", "--name=cli_photos",
         f"--data_dir={tmp_path / 'tfds'}", "--min_size=20", "--val_fraction=0.25"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "grayscale" in out.stdout
    assert "near_gray" in out.stdout
    assert "too_small" in out.stdout
    assert "--config.data.name=cli_photos" in out.stdout
    saved = json.loads((tmp_path / "tfds" / "cli_photos" / "colorjax_prepare.json").read_text())
    assert saved["report"]["rejected"] == EXPECTED_REJECTED


def test_imagenet_samples_grayscale_all_found(tmp_path, shared_data):
    """All mode-L photos of the real sample are reported as grayscale; the RGB files that
    are gray apart from JPEG noise or a watermark are 'near_gray'; nothing else is dropped.
    Uses the L photos, the near-gray ones and 40 colour photos (the full run is in the README)."""
    root = shared_data / "imagenet-samples"
    files = sorted(root.iterdir())
    mode_l = [f for f in files if Image.open(f).mode == "L"]
    assert len(mode_l) == 23
    near = [root / f"{n}.JPEG" for n in ("n03141823_crutch", "n03532672_hook", "n04487394_trombone")]
    colour = [f for f in files if f not in mode_l and f not in near][::24][:40]
    src = tmp_path / "subset"
    src.mkdir()
    for f in mode_l + near + colour:
        (src / f.name).symlink_to(f)
    report = prepare_folder(src, "imagenet_subset", tmp_path / "tfds", progress=False)
    assert report.rejected == {"grayscale": 23, "near_gray": 3}
    assert report.kept == len(colour)
    rejected = Path(report.rejected_list).read_text()
    for f in mode_l:
        assert f"grayscale\t{f.name}\tmode L" in rejected


def test_concurrent_first_use_prepares_once(tmp_path):
    """Two processes preparing the same folder at once (as two runs on one machine do):
    one prepares, the other waits on the lock and finds its dataset."""
    src = make_plain_folder(tmp_path / "photos", 60)
    code = ("import sys, json; from colorjax.data import prepare_folder; "
            "r = prepare_folder(sys.argv[1], 'raced', sys.argv[2], progress=False); "
            "print(json.dumps({'cached': r.cached, 'splits': r.splits}))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(src), str(tmp_path / "tfds")],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(r["cached"] for r in reports) == [False, True]
    assert reports[0]["splits"] == reports[1]["splits"]
    assert sum(reports[0]["splits"].values()) == 60


def test_rejections_name_the_file_not_a_buffer(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    res = images.check_image(str(tmp_path / "notes.jpg"), min_size=1, gray_threshold=1.0)
    assert res.reason == "not_an_image"
    assert "notes.jpg" in res.detail
    assert "BytesIO" not in res.detail
