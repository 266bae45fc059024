"""Colour hints (`colorjax/hints/__init__.py`): the truth sampler (deterministic per seed and
position, the paper's statistics), the pipeline's hint planes (resumable, the same crops
and flips as without), the JSON format and the user hints' planes."""

import jax
import numpy as np
import pytest

from colorjax import Hint, color
from colorjax import hints
from colorjax.data import create_eval_iterator, create_train_iterator, default_data_config
from colorjax.data import prepare_folder
from test_data_fixtures import make_plain_folder

S = 16


def _truth(seed=0, size=S):
    return np.random.default_rng(seed).uniform(-0.6, 0.6, (size, size, 2)).astype(np.float32)


# --- the sampler -------------------------------------------------------------------------


def test_sampler_is_deterministic_per_seed_and_position():
    ab = _truth()
    a = hints.sample_planes(ab, hints.hint_rng(3, 17))
    b = hints.sample_planes(ab, hints.hint_rng(3, 17))
    np.testing.assert_array_equal(a, b)
    others = [hints.sample_planes(ab, hints.hint_rng(s, p)) for s, p in ((4, 17), (3, 18))]
    assert all(not np.array_equal(a, o) for o in others if o[..., 2].any() or a[..., 2].any())
    assert a.shape == (S, S, 3) and a.dtype == np.float32


def test_number_of_points_is_geometric_from_zero_with_p_one_eighth():
    rng = np.random.default_rng(0)
    counts = np.array([hints.sample_num_points(rng) for _ in range(20000)])
    p = hints.POINT_P
    assert abs(np.mean(counts == 0) - p) < 0.01  # 1/8 of the examples get no hint
    assert abs(np.mean(counts == 1) - p * (1 - p)) < 0.01
    assert abs(counts.mean() - (1 - p) / p) < 0.2  # mean 7


def test_fraction_of_examples_without_hints_is_p():
    ab = _truth(size=8)
    none = [not hints.sample_planes(ab, hints.hint_rng(0, i))[..., 2].any() for i in range(4000)]
    assert abs(np.mean(none) - hints.POINT_P) < 0.02


def test_each_patch_holds_the_truths_mean_ab():
    ab = _truth(1, 32)
    for position in range(50):
        planes = hints.sample_planes(ab, hints.hint_rng(5, position), num_points=1)
        mask = planes[..., 2] > 0
        ys, xs = np.nonzero(mask)
        assert mask.sum() >= 1
        # One square patch: its bounding box is full, its side in 1..max_side(32).
        side = ys.max() - ys.min() + 1
        assert side == xs.max() - xs.min() + 1 and mask.sum() == side * side
        assert 1 <= side <= hints.max_side(32)
        np.testing.assert_allclose(planes[mask][:, :2], np.broadcast_to(
            ab[mask].mean(0), (mask.sum(), 2)), atol=1e-6)
        assert not planes[~mask].any()  # zero where there is no hint


def test_patch_sides_and_locations_cover_the_image():
    ab = _truth(2, 64)
    sides, centres = [], []
    for position in range(600):
        planes = hints.sample_planes(ab, hints.hint_rng(0, position), num_points=1)
        ys, xs = np.nonzero(planes[..., 2])
        sides.append(ys.max() - ys.min() + 1)
        centres.append((ys.mean(), xs.mean()))
    assert set(sides) == set(range(1, hints.max_side(64) + 1))  # 1..3 at 64 px
    c = np.array(centres)
    # Half Gaussian around the centre, half uniform: every region is reached, the centre more.
    assert c.min() < 4 and c.max() > 59
    central = np.mean(np.all(np.abs(c - 31.5) < 16, axis=1))
    assert central > 0.25 + 0.1  # uniform alone would put a quarter in the central square


def test_sizes():
    assert [hints.max_side(s) for s in (16, 64, 176, 256)] == [1, 3, 9, 13]
    assert [hints.inference_side(s) for s in (16, 64, 176, 256)] == [1, 1, 5, 7]


# --- the pipeline ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("hints_pipeline")
    src = make_plain_folder(root / "photos", 12)
    prepare_folder(src, "hintsmall", root / "tfds", val_fraction=0.0, progress=False)
    cfg = default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size = "hintsmall", str(root / "tfds"), S
    cfg.read_threads = 0
    return cfg


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_pipeline_yields_hints_from_the_augmented_truth(small):
    plain = _take(create_train_iterator(small, global_batch_size=4, seed=1), 3)
    with_hints = _take(create_train_iterator(small, global_batch_size=4, seed=1,
                                             with_hints=True), 3)
    seen = 0
    for p, h in zip(plain, with_hints):
        assert "hints" not in p
        assert h["hints"].shape == (4, S, S, 3) and h["hints"].dtype == np.float32
        # Hints drawn from their own generator: the same crops and flips as without.
        np.testing.assert_array_equal(p["l"], h["l"])
        np.testing.assert_array_equal(p["ab"], h["ab"])
        mask = h["hints"][..., 2]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        seen += int(mask.sum() > 0)
        assert not h["hints"][..., :2][mask == 0].any()
    assert seen  # some hints in 12 examples (P(none) = 1/8 each)


def test_pipeline_hints_are_the_samplers_for_the_stream_position(small):
    """Example j of batch k is stream position k*B + j; its hints are the sampler's for
    that position and the data seed, from the truth the batch holds."""
    batches = _take(create_train_iterator(small, global_batch_size=4, seed=7,
                                          with_hints=True), 2)
    for k, batch in enumerate(batches):
        for j in range(4):
            expect = hints.sample_planes(batch["ab"][j], hints.hint_rng(7, 4 * k + j))
            np.testing.assert_array_equal(batch["hints"][j], expect)


def test_pipeline_hints_resume_identically(small):
    it = create_train_iterator(small, global_batch_size=4, seed=2, with_hints=True)
    full = _take(it, 5)
    it = create_train_iterator(small, global_batch_size=4, seed=2, with_hints=True)
    _take(it, 2)
    state = it.get_state()
    assert state["hints"] is True
    fresh = create_train_iterator(small, global_batch_size=4, seed=2, with_hints=True)
    fresh.set_state(state)
    for a, b in zip(full[2:], _take(fresh, 3)):
        for key in ("l", "ab", "hints"):
            np.testing.assert_array_equal(a[key], b[key])
    plain = create_train_iterator(small, global_batch_size=4, seed=2)
    _take(plain, 1)
    with pytest.raises(ValueError, match="does not belong"):  # a state saved without hints
        fresh.set_state(plain.get_state())


def test_pipeline_process_blocks_hold_the_same_hints(small, monkeypatch):
    one = next(create_train_iterator(small, global_batch_size=4, seed=3, with_hints=True))
    parts = []
    for index in range(2):
        monkeypatch.setattr(jax, "process_index", lambda i=index: i)
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        parts.append(next(create_train_iterator(small, global_batch_size=4, seed=3,
                                                with_hints=True))["hints"])
    np.testing.assert_array_equal(np.concatenate(parts), one["hints"])


def test_eval_batches_with_a_fixed_number_of_hints(small):
    def batches(bs, n=5):
        return list(create_eval_iterator(small, split="train", global_batch_size=bs,
                                         num_examples=n, num_hints=3, hint_seed=4))
    a, b = batches(4), batches(2)
    planes_a = np.concatenate([x["hints"] for x in a])[:5]
    planes_b = np.concatenate([x["hints"] for x in b])[:5]
    np.testing.assert_array_equal(planes_a, planes_b)  # per image, whatever the batch size
    assert all(p[..., 2].any() for p in planes_a)
    assert not np.concatenate([x["hints"] for x in a])[5:].any()  # padding: no hints
    plain = list(create_eval_iterator(small, split="train", global_batch_size=4,
                                      num_examples=5))
    assert "hints" not in plain[0]


# --- user hints --------------------------------------------------------------------------


def test_json_format():
    got = hints.hints_from_json([{"x": 1, "y": 2.5, "rgb": [255, 0, 0]},
                                 {"x": 3, "y": 4, "rgb": "#00ff80"},
                                 {"x": 0, "y": 0, "ab": [10, -20.5]}])
    assert got == [Hint(1.0, 2.5, rgb=(255, 0, 0)), Hint(3, 4, rgb=(0, 255, 128)),
                   Hint(0, 0, ab=(10.0, -20.5))]
    assert hints.hints_from_json([]) == []


@pytest.mark.parametrize("obj,match", [
    ({"x": 1}, "hints must be a JSON list"),
    ([3], r"hints\[0\]: a int, not an object"),
    ([{"x": 1, "rgb": [1, 2, 3]}], r"hints\[0\]: keys must be x, y"),
    ([{"x": 1, "y": 1, "rgb": [1, 2, 3], "ab": [0, 0]}], "exactly one of rgb, ab"),
    ([{"x": 1, "y": 1, "colour": [1, 2, 3]}], r"unknown: colour"),
    ([{"x": 1, "y": 1, "rgb": [1, 2]}], r"rgb=\[1, 2\] is not allowed"),
    ([{"x": 1, "y": 1, "rgb": [1, 2, 300]}], "ints 0-255"),
    ([{"x": 1, "y": 1, "rgb": [1.5, 2, 3]}], "ints 0-255"),
    ([{"x": 1, "y": 1, "rgb": "#12345"}], "#rrggbb"),
    ([{"x": 1, "y": 1, "ab": [0, 500]}], r"\[-110, 110\]"),
    ([{"x": "1", "y": 1, "ab": [0, 0]}], "x='1' is not allowed"),
    ([{"x": 1, "y": float("nan"), "ab": [0, 0]}], "finite"),
    ([{"x": True, "y": 1, "ab": [0, 0]}], "x=True"),
])
def test_bad_json_is_one_clear_line(obj, match):
    with pytest.raises(ValueError, match=match) as e:
        hints.hints_from_json(obj)
    assert "\n" not in str(e.value)


def test_json_text_is_bounded_before_it_is_parsed():
    text = '[{"x": 1, "y": 2, "rgb": "#ff0000"}, {"x": 3, "y": 4, "ab": [1, -2]}]'
    assert hints.hints_from_json(hints.parse_json(text)) == [
        Hint(1, 2, rgb=(255, 0, 0)), Hint(3, 4, ab=(1.0, -2.0))]
    assert hints.parse_json(text.encode()) == hints.parse_json(text)
    # Brackets and quotes inside strings are not nesting.
    assert hints.parse_json('[{"x": "[[[[[[[[[[\\"[[[[", "y": "}}}"}]') == [
        {"x": '[[[[[[[[[["[[[[', "y": "}}}"}]
    for text, match in [("[" * 100_000, "is 100,000 bytes long; at most 65,536"),
                        ("[" * 9 + "]" * 9, "nested 9 levels deep; at most 8"),
                        ('[{"x": 1,', "is not valid JSON"),
                        (b"[\xff]", "is not valid JSON")]:
        with pytest.raises(ValueError, match=match) as e:
            hints.parse_json(text)
        assert "\n" not in str(e.value)
    assert hints.parse_json("[" * 8 + "]" * 8) == [[[[[[[[]]]]]]]]
    with pytest.raises(ValueError, match="257 hints; at most 256"):
        hints.hints_from_json([{"x": 1, "y": 1, "rgb": "#ffffff"}] * 257, hints.MAX_POINTS)


def test_hint_needs_exactly_one_colour():
    with pytest.raises(ValueError, match="exactly one colour"):
        Hint(1, 2)
    with pytest.raises(ValueError, match="exactly one colour"):
        Hint(1, 2, rgb=(1, 2, 3), ab=(0, 0))


def test_rgb_hint_becomes_ab_at_the_photos_own_lightness():
    red = (255, 0, 0)
    lab = color.rgb_to_lab(np.array([[[1.0, 0.0, 0.0]]], np.float32))[0, 0]
    a, b = hints.rgb_to_ab_at(red, float(lab[0]))  # at its own L: its own ab
    np.testing.assert_allclose((a, b), lab[1:], atol=0.6)
    for lightness in (10.0, 90.0):  # elsewhere: the same hue, chroma within sRGB at that L
        a2, b2 = hints.rgb_to_ab_at(red, lightness)
        assert np.hypot(a2, b2) < np.hypot(*lab[1:])
        assert abs(np.arctan2(b2, a2) - np.arctan2(lab[2], lab[1])) < 1e-3
        rgb = color.lab_to_rgb(np.array([[[lightness, a2, b2]]], np.float32))
        back = color.rgb_to_lab(rgb)[0, 0]
        np.testing.assert_allclose(back, (lightness, a2, b2), atol=0.6)  # in gamut


def test_planes_for_photo_map_full_resolution_pixels():
    l = np.full((30, 60), 50.0, np.float32)  # 60 wide, 30 high
    planes = hints.planes_for_photo([Hint(59.5, 29.5, ab=(22.0, -11.0)),
                                     Hint(0, 0, rgb=(0, 0, 255))], l, 16)
    assert planes.shape == (16, 16, 3)
    assert planes[15, 15, 2] == 1 and planes[0, 0, 2] == 1 and planes[..., 2].sum() == 2
    np.testing.assert_allclose(planes[15, 15, :2], (22 / 110, -11 / 110))
    a, b = hints.rgb_to_ab_at((0, 0, 255), 50.0)
    np.testing.assert_allclose(planes[0, 0, :2], (a / 110, b / 110), rtol=1e-6)
    mid = hints.planes_for_photo([Hint(30, 15, ab=(5, 5))], l, 16)
    assert mid[8, 8, 2] == 1
    wide = hints.planes_for_photo([Hint(30, 15, ab=(5, 5))], l, 16, side=3)
    assert wide[..., 2].sum() == 9 and wide[7:10, 7:10, 2].all()
    for bad in (Hint(60, 0, ab=(0, 0)), Hint(0, 30, ab=(0, 0)), Hint(-1, 0, ab=(0, 0))):
        with pytest.raises(ValueError, match="outside the photo; allowed: 0 <= x < 60, "
                                             "0 <= y < 30"):
            hints.planes_for_photo([bad], l, 16)
