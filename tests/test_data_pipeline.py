"""The grain pipeline: shapes, determinism, process shards, exact resume, eval padding, errors."""

import platform
import sys

import jax
import numpy as np
import pytest

from colorjax import color
from colorjax.config.checks import ConfigError
from colorjax.data import (
    create_eval_iterator, create_train_iterator, decode_state, default_data_config,
    encode_state, num_examples, prepare_demo, prepare_folder, validate_data_config,
)
from colorjax.data import allocator
from test_data_fixtures import make_plain_folder

N = 30  # images in the generated dataset
S = 16  # image_size in these tests


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A prepared dataset of N distinct 40x32 images (all in 'train') and its config."""
    root = tmp_path_factory.mktemp("pipeline")
    src = make_plain_folder(root / "photos", N)
    report = prepare_folder(src, "small", root / "tfds", val_fraction=0.0, progress=False)
    cfg = default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size = "small", str(root / "tfds"), S
    cfg.read_threads = 0
    return cfg, report


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def _fake_processes(monkeypatch, index, count):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)


def test_batches_have_the_promised_shapes_and_ranges(small):
    cfg, _ = small
    batch = next(create_train_iterator(cfg, global_batch_size=4, seed=0))
    assert batch["l"].shape == (4, S, S, 1)
    assert batch["ab"].shape == (4, S, S, 2)
    assert batch["l"].dtype == np.float32
    assert batch["ab"].dtype == np.float32
    assert -1 <= batch["l"].min()
    assert batch["l"].max() <= 1
    assert np.abs(batch["ab"]).max() <= 1
    # L and ab are color.py's scaling of an RGB image: back to RGB lands in [0, 1].
    rgb = color.model_outputs_to_rgb(batch["l"], batch["ab"])
    assert rgb.shape == (4, S, S, 3)
    assert np.isfinite(rgb).all()


def test_deterministic_for_a_seed_and_reshuffled_each_epoch(small):
    cfg, _ = small
    a = _take(create_train_iterator(cfg, global_batch_size=5, seed=1), 12)  # 2 epochs
    b = _take(create_train_iterator(cfg, global_batch_size=5, seed=1), 12)
    c = _take(create_train_iterator(cfg, global_batch_size=5, seed=2), 12)
    assert _same(a, b)
    assert not _same(a, c)
    cfg2 = cfg.copy_and_resolve_references()
    cfg2.shuffle_seed = 1
    assert _same(_take(create_train_iterator(cfg2, global_batch_size=5, seed=99), 12), a)
    # Without augmentation each example is a fixed array, so epochs can be compared as sets.
    cfg2.random_crop, cfg2.hflip = False, False
    ex = [x for b in _take(create_train_iterator(cfg2, global_batch_size=5, seed=1), 12)
          for x in b["l"]]
    epoch1, epoch2 = ex[:N], ex[N:]
    key = lambda x: x.tobytes()  # noqa: E731
    assert sorted(map(key, epoch1)) == sorted(map(key, epoch2))
    assert len(set(map(key, epoch1))) == N
    assert [key(x) for x in epoch1] != [key(x) for x in epoch2]


def _eval_examples(cfg, monkeypatch, index, count):
    _fake_processes(monkeypatch, index, count)
    out = []
    for batch in create_eval_iterator(cfg, split="train", global_batch_size=2 * count):
        out += [l.tobytes() for l, m in zip(batch["l"], batch["mask"]) if m == 1]
    return out


def test_process_shards_are_disjoint_and_cover_the_data(small, monkeypatch):
    cfg, _ = small
    everything = _eval_examples(cfg, monkeypatch, 0, 1)
    assert len(set(everything)) == N
    shard0 = _eval_examples(cfg, monkeypatch, 0, 2)
    shard1 = _eval_examples(cfg, monkeypatch, 1, 2)
    assert not set(shard0) & set(shard1)
    assert set(shard0) | set(shard1) == set(everything)


@pytest.mark.parametrize("count", [2, 3])
def test_processes_read_the_global_batches_of_one_process(small, monkeypatch, count):
    """Process i's rows are block i of each global batch, augmentations included, so a run
    on several processes trains on exactly the batches of a run on one."""
    cfg, _ = small
    B = 6
    _fake_processes(monkeypatch, 0, 1)
    one = _take(create_train_iterator(cfg, global_batch_size=B, seed=3), 7)  # > 1 epoch
    one_eval = list(create_eval_iterator(cfg, split="train", global_batch_size=B,
                                         num_examples=N - 1))
    per_process, per_process_eval = [], []
    for index in range(count):
        _fake_processes(monkeypatch, index, count)
        it = create_train_iterator(cfg, global_batch_size=B, seed=3)
        per_process.append(_take(it, 7))
        assert it.get_state() == {**one_state(cfg, B), "next_batch": 7}
        per_process_eval.append(list(create_eval_iterator(
            cfg, split="train", global_batch_size=B, num_examples=N - 1)))
    for k in range(7):
        for key in ("l", "ab"):
            np.testing.assert_array_equal(
                np.concatenate([p[k][key] for p in per_process]), one[k][key])
    assert len(one_eval) == len(per_process_eval[0])  # ceil(29 / 6) batches everywhere
    for k in range(len(one_eval)):
        for key in ("l", "ab", "mask"):
            np.testing.assert_array_equal(
                np.concatenate([p[k][key] for p in per_process_eval]), one_eval[k][key])


def one_state(cfg, global_batch):
    """The state of a fresh one-process iterator (without its position)."""
    state = create_train_iterator(cfg, global_batch_size=global_batch, seed=3).get_state()
    return {k: v for k, v in state.items() if k != "next_batch"}


def test_batch_size_must_divide_over_processes(small, monkeypatch):
    cfg, _ = small
    _fake_processes(monkeypatch, 0, 2)
    with pytest.raises(ConfigError, match=r"config\.batch_size: 5 must be divisible by the "
                                          r"number of processes \(2, .*allowed: multiples of 2"):
        create_train_iterator(cfg, global_batch_size=5, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("workers,threads", [(0, 0), (0, 2), (2, 1)])
def test_save_take_restore_take_is_identical(small, workers, threads):
    cfg, _ = small
    cfg = cfg.copy_and_resolve_references()
    cfg.workers, cfg.read_threads = workers, threads
    it = create_train_iterator(cfg, global_batch_size=4, seed=7)
    try:
        _take(it, 3)
        state = it.get_state()
        saved = decode_state(encode_state(state))  # what a JSON checkpoint gives back
        assert saved == state
        after = _take(it, 2)
        it.set_state(saved)
        assert _same(_take(it, 2), after)
    finally:
        it.close()
    # A new run restoring the state sees the same batches, and so does workers=0.
    plain = cfg.copy_and_resolve_references()
    plain.workers, plain.read_threads = 0, 0
    fresh = create_train_iterator(plain, global_batch_size=4, seed=7)
    fresh.set_state(saved)
    assert _same(_take(fresh, 2), after)


def test_state_of_another_pipeline_is_refused(small):
    cfg, _ = small
    state = create_train_iterator(cfg, global_batch_size=4, seed=7).get_state()
    other = create_train_iterator(cfg, global_batch_size=2, seed=7)
    with pytest.raises(ValueError, match="batch_size"):
        other.set_state(state)


def test_eval_pads_the_last_batch_and_is_repeatable(small, monkeypatch):
    cfg, _ = small
    ev = create_eval_iterator(cfg, split="train", global_batch_size=4, num_examples=5)
    batches = list(ev)
    assert len(ev) == len(batches) == 2
    assert [b["mask"].tolist() for b in batches] == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert batches[1]["l"].shape == (4, S, S, 1)
    assert not batches[1]["l"][1:].any()
    assert _same(list(ev), batches)
    for index in (0, 1):  # 5 examples over 2 processes: 3 and 2, both in 2 batches of 2
        _fake_processes(monkeypatch, index, 2)
        ev = create_eval_iterator(cfg, split="train", global_batch_size=4, num_examples=5)
        assert len(ev) == 2
        assert sum(b["mask"].sum() for b in ev) == 3 - index


def test_num_examples(small):
    cfg, _ = small
    assert num_examples(cfg, "train") == N
    assert num_examples(cfg, "train[:10]") == 10


def test_demo_is_the_default_and_has_disjoint_splits(tmp_path):
    cfg = default_data_config()
    cfg.data_dir = str(tmp_path)
    validate_data_config(cfg, split="validation")
    report = prepare_demo(cfg.data_dir, progress=False)
    assert report.splits == {"train": 62, "validation": 26}
    assert num_examples(cfg, "validation", for_eval=True) == 26
    batch = next(create_train_iterator(cfg, global_batch_size=2, seed=0))
    assert batch["l"].shape == (2, 64, 64, 1)


def test_eval_data_can_differ_from_train_data(small, tmp_path):
    cfg, _ = small
    cfg = cfg.copy_and_resolve_references()
    make_plain_folder(tmp_path / "val", 3)
    cfg.eval_folder = str(tmp_path)
    validate_data_config(cfg, split="validation")
    assert num_examples(cfg, "validation", for_eval=True) == 3
    assert num_examples(cfg, "train") == N
    with pytest.raises(ValueError, match=r"config\.eval\.split: 'test' is not a split.*allowed: \['validation'\]"):
        validate_data_config(cfg, split="test")


def test_allocator_setting_is_applied_and_changes_no_batch(small):
    cfg, _ = small
    tuned = _take(create_train_iterator(cfg, global_batch_size=4, seed=3), 3)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert allocator.keep_freed_memory()  # mallopt accepted both settings
    plain = cfg.copy_and_resolve_references()
    plain.keep_freed_memory = False
    assert _same(_take(create_train_iterator(plain, global_batch_size=4, seed=3), 3), tuned)


@pytest.mark.parametrize("field,value,match", [
    ("image_size", "big", r"config\.data\.image_size"),
    ("image_size", 4, r"config\.data\.image_size"),
    ("workers", -1, r"config\.data\.workers"),
    ("resize_shorter_to", 10, r"config\.data\.resize_shorter_to"),
    ("gray_threshold", -1.0, r"config\.data\.gray_threshold"),
    ("val_fraction", 1.5, r"config\.data\.val_fraction"),
    ("hflip", "yes", r"config\.data\.hflip"),
    ("keep_freed_memory", 1, r"config\.data\.keep_freed_memory"),
    ("name", "no_such_data", r"config\.data\.name: 'no_such_data'.*colorjax_demo.*colorjax\.data\.prepare"),
    ("folder", "/no/such/folder", r"config\.data\.folder"),
    ("train_split", "training", r"config\.data\.train_split: 'training' is not a split.*train"),
    ("name", "cifar10", r"(?s)config\.data\.name: 'cifar10'.*colorjax\[tensorflow\].*download_and_prepare"),
])
def test_bad_fields_are_named(small, field, value, match, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # no cifar10 prepared there
    cfg, _ = small
    cfg = dict(cfg.items())
    cfg[field] = value
    with pytest.raises(ValueError, match=match):
        validate_data_config(cfg)


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match=r"config\.data\.imgae_size"):
        validate_data_config({"imgae_size": 64})


def test_other_tfds_datasets_are_found_by_name_in_tfds_data_dir(tmp_path, monkeypatch):
    """A dataset prepared by TFDS itself (here: written without colorjax's marker file) in
    $TFDS_DATA_DIR is read by name, from its `image_key` feature."""
    from colorjax.data import builders

    src = make_plain_folder(tmp_path / "photos", 4)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    rows = [(str(i), p.name, str(p)) for i, p in enumerate(files)]
    plan = {"train": rows[:2], "test": rows}
    builders.write_dataset("other_catalog", tmp_path / "tfds_home", plan,
                           lambda path: open(path, "rb").read(), "not colorjax's")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds_home"))
    cfg = default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size = "other_catalog", str(tmp_path / "empty"), S
    validate_data_config(cfg, split="test")
    assert num_examples(cfg, "test") == 4
    batch = next(iter(create_eval_iterator(cfg, split="test", global_batch_size=4)))
    assert batch["mask"].tolist() == [1, 1, 1, 1]
    cfg.image_key = "photo"
    with pytest.raises(ConfigError, match=r"config\.data\.image_key: 'photo'.*image"):
        validate_data_config(cfg)
