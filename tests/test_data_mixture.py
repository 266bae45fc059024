"""config.data.mixture: weighted proportions, exact resume, process layout, errors, sizes."""

import logging

import jax
import numpy as np
import pytest
from PIL import Image

from colorjax.platform import parallel
from colorjax.data import (
    create_train_iterator, decode_state, default_data_config, encode_state, num_examples,
    prepare_folder, validate_data_config,
)

S = 16
N_RED, N_GREEN = 12, 5


def _solid_folder(root, n, channel):
    """``n`` distinct solid-colour PNGs: strong red (channel 0) or green (channel 1)."""
    root.mkdir(parents=True)
    for i in range(n):
        rgb = np.full((32, 40, 3), 20, np.uint8)
        rgb[..., channel] = 180 + 5 * i
        Image.fromarray(rgb).save(root / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A red photo folder (read as a folder) and a green one prepared as dataset 'greens'."""
    root = tmp_path_factory.mktemp("mixture")
    red = _solid_folder(root / "red", N_RED, 0)
    green = _solid_folder(root / "green", N_GREEN, 1)
    prepare_folder(green, "greens", root / "tfds", val_fraction=0.0, progress=False)
    cfg = default_data_config()
    cfg.data_dir, cfg.image_size, cfg.read_threads = str(root / "tfds"), S, 0
    cfg.val_fraction = 0.0  # the red folder has no split subfolders: all of it is train
    cfg.mixture = f"{red}=3,greens"
    return cfg, root


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def _is_red(batch):
    """Per example: red (a > 0) or green (a < 0), from the mean of the ab channel a."""
    a = batch["ab"][..., 0].mean(axis=(1, 2))
    assert (np.abs(a) > 0.1).all()  # every example is clearly one of the two
    return a > 0


def _fake_processes(monkeypatch, index, count):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)
    # The folder source is prepared on process 0 first; with one real process, no barrier.
    monkeypatch.setattr(parallel, "barrier", lambda name: None)


def test_proportions_follow_the_weights(data):
    cfg, _ = data
    red = np.concatenate([_is_red(b) for b in _take(
        create_train_iterator(cfg, global_batch_size=8, seed=0), 25)])
    assert abs(red.mean() - 0.75) < 0.03  # 3:1 over 200 examples (> 12 epochs of green)
    equal = cfg.copy_and_resolve_references()
    equal.mixture = cfg.mixture.replace("=3", "=1")
    red = np.concatenate([_is_red(b) for b in _take(
        create_train_iterator(equal, global_batch_size=8, seed=0), 10)])
    assert abs(red.mean() - 0.5) < 0.05


def test_save_take_restore_take_is_identical(data):
    cfg, _ = data
    it = create_train_iterator(cfg, global_batch_size=4, seed=7)
    _take(it, 3)
    saved = decode_state(encode_state(it.get_state()))  # what a JSON checkpoint gives back
    assert saved == it.get_state()
    assert [m["weight"] for m in saved["mixture"]] == [3.0, 1.0]
    assert [m["num_examples"] for m in saved["mixture"]] == [N_RED, N_GREEN]
    assert saved["num_examples"] == N_RED + N_GREEN
    after = _take(it, 2)
    it.set_state(saved)
    assert _same(_take(it, 2), after)
    fresh = create_train_iterator(cfg, global_batch_size=4, seed=7)
    fresh.set_state(saved)
    assert _same(_take(fresh, 2), after)
    other = create_train_iterator(cfg, global_batch_size=4, seed=8)
    with pytest.raises(ValueError, match="seed"):
        other.set_state(saved)


def test_a_changed_mixture_resumes_with_a_warning(data, caplog):
    cfg, _ = data
    state = create_train_iterator(cfg, global_batch_size=4, seed=7).get_state()
    changed = cfg.copy_and_resolve_references()
    changed.mixture = cfg.mixture.replace("=3", "=2")
    it = create_train_iterator(changed, global_batch_size=4, seed=7)
    with caplog.at_level(logging.WARNING):
        it.set_state(state)
    assert "Data changed" in caplog.text


def test_two_processes_read_the_global_batches_of_one(data, monkeypatch):
    cfg, _ = data
    one = _take(create_train_iterator(cfg, global_batch_size=6, seed=3), 5)
    parts = []
    for index in range(2):
        _fake_processes(monkeypatch, index, 2)
        parts.append(_take(create_train_iterator(cfg, global_batch_size=6, seed=3), 5))
    for k in range(5):
        for key in ("l", "ab"):
            np.testing.assert_array_equal(np.concatenate([p[k][key] for p in parts]),
                                          one[k][key])


def test_one_source_mixture_is_that_source_alone(data):
    cfg, root = data
    alone = cfg.copy_and_resolve_references()
    alone.mixture, alone.name = "", "greens"
    mixed = cfg.copy_and_resolve_references()
    mixed.mixture = "greens=5"
    assert _same(_take(create_train_iterator(mixed, global_batch_size=4, seed=1), 4),
                 _take(create_train_iterator(alone, global_batch_size=4, seed=1), 4))


def test_num_examples_sums_the_sources_and_eval_data_is_not_mixed(data):
    cfg, root = data
    assert num_examples(cfg, cfg.train_split) == N_RED + N_GREEN
    assert num_examples(cfg, "train[:3]") == 3 + 3
    ev = cfg.copy_and_resolve_references()
    ev.name = "greens"  # eval data: name/folder (or eval_*), never the mixture
    assert num_examples(ev, "train", for_eval=True) == N_GREEN
    validate_data_config(ev, split="train")


@pytest.mark.parametrize("mixture,match", [
    ("greens=x", r"config\.data\.mixture: entry 1 'greens=x': the weight 'x' is not a number"),
    ("greens=0", r"config\.data\.mixture: entry 1 .*not a number > 0"),
    ("greens=-2", r"config\.data\.mixture: entry 1 .*not a number > 0"),
    ("greens=nan", r"config\.data\.mixture: entry 1 .*not a number > 0"),
    ("greens,,greens", r"config\.data\.mixture: entry 2 '' names no source"),
    ("greens,", r"config\.data\.mixture: entry 2 '' names no source"),
    ("=2", r"config\.data\.mixture: entry 1 '=2' names no source"),
    ("greens,no_such_data=2", r"config\.data\.mixture: 'no_such_data': no such folder or dataset.*greens"),
    ("/no/such/folder", r"config\.data\.mixture: '/no/such/folder': no such folder or dataset"),
    ("VALONLY", r"config\.data\.mixture: the source folder .*valonly.* has no split 'train'"),
    # One source twice (by name, or a folder spelt two ways) would be read as two.
    ("greens,greens=2", r"config\.data\.mixture: entry 2 'greens' names the same source as "
                        r"entry 1 'greens' .*allowed: each source once"),
    ("RED=2,greens,RED/./", r"config\.data\.mixture: entry 3 '.*red/\./' names the same "
                            r"source as entry 1 '.*red'"),
    ("greens,EMPTY", r"config\.data\.mixture: '.*empty' holds no photos .*allowed: a folder"),
])
def test_bad_entries_are_named(data, mixture, match, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    cfg, root = data
    if "VALONLY" in mixture:
        if not (root / "valonly").exists():
            _solid_folder(root / "valonly" / "val", 3, 0)
        mixture = mixture.replace("VALONLY", str(root / "valonly"))
    if "EMPTY" in mixture:  # a folder with files, none of them a photo
        (root / "empty" / ".hidden").mkdir(parents=True, exist_ok=True)
        (root / "empty" / "notes.txt").write_text("no photos here")
        (root / "empty" / ".hidden" / "a.png").write_bytes(b"hidden: not read")
        mixture = mixture.replace("EMPTY", str(root / "empty"))
    mixture = mixture.replace("RED", str(root / "red"))
    cfg = cfg.copy_and_resolve_references()
    cfg.mixture = mixture
    with pytest.raises(ValueError, match=match):
        validate_data_config(cfg)
    if "names no source" in match or "number" in match:  # syntax: caught before any file
        with pytest.raises(ValueError, match=match):
            create_train_iterator(cfg, global_batch_size=2, seed=0)
