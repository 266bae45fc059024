"""AuC colour accuracy (Zhang et al. 2016, §3.1) on hand-made cases and against brute force."""

import types

import jax
import numpy as np
import pytest

from colorjax.metrics import auc as auc_lib
from colorjax.metrics import ab_accuracy_auc, accuracy_counts, auc_from_counts

T = auc_lib.MAX_THRESHOLD


def _truth(n=2, h=4, w=5, seed=0):
    # Integer ab values: adding integer-friendly offsets keeps the distances exact in float32.
    return np.random.default_rng(seed).integers(-100, 100, (n, h, w, 2)).astype(np.float32)


def _offset(ab, d):
    """Shift every pixel by exactly d along a (3, 4)/5 direction: 0.6 d and 0.8 d."""
    return ab + np.array([0.6 * d, 0.8 * d], np.float32)


def _closed_form(d):
    # accuracy(t) steps from 0 to 1 at t = k = ceil(d); on the unit grid the trapezoid
    # gives 1/2 on the interval [k-1, k] and 1 on each of the 150 - k intervals after it.
    k = int(np.ceil(d))
    if k == 0:
        return 1.0
    return max(0.0, (T - k + 0.5) / T)


def test_perfect_prediction_scores_one():
    ab = _truth()
    got = ab_accuracy_auc(ab, ab)
    assert float(got["auc"]) == pytest.approx(1.0, abs=1e-7)
    assert float(got["auc_rebalanced"]) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("d", [0.5, 10.0, 149.5, 200.0])
def test_constant_error_matches_the_trapezoid_closed_form(d):
    ab = _truth()
    got = ab_accuracy_auc(_offset(ab, d), ab)
    want = {0.5: 149.5 / 150, 10.0: 140.5 / 150, 149.5: 0.5 / 150, 200.0: 0.0}[d]
    assert _closed_form(d) == pytest.approx(want)
    np.testing.assert_allclose(float(got["auc"]), want, atol=1e-6)
    # Every bin has the same curve, so rebalancing changes nothing.
    np.testing.assert_allclose(float(got["auc_rebalanced"]), want, atol=1e-6)


def test_half_perfect_half_far_off_is_one_half():
    ab = _truth(n=2)
    pred = ab.copy()
    pred[1] = _offset(ab[1], 200.0)
    got = ab_accuracy_auc(pred, ab)
    np.testing.assert_allclose(float(got["auc"]), 0.5, atol=1e-6)


def test_a_rare_wrong_colour_halves_the_rebalanced_auc_only():
    # 1 image of 32x32 pixels: 4 pixels of a rare colour, all 200 off; the rest perfect.
    ab = np.zeros((1, 32, 32, 2), np.float32)
    ab[0, 0, :4] = [55.0, -55.0]  # a different 10-unit bin from (0, 0)
    pred = ab.copy()
    pred[0, 0, :4] = _offset(ab[0, 0, :4], 200.0)
    got = ab_accuracy_auc(pred, ab)
    assert float(got["auc"]) == pytest.approx((1024 - 4) / 1024, abs=1e-6)
    assert float(got["auc"]) > 0.99
    assert float(got["auc_rebalanced"]) == 0.5


def test_padded_rows_change_nothing():
    ab = _truth(n=3)
    pred = _offset(ab, 7.3)
    pred[1] = ab[1]  # one perfect image, so the images differ from each other
    base = accuracy_counts(pred[:2], ab[:2])
    # Padding rows hold garbage (far-off predictions, out-of-gamut truth); mask 0 drops them.
    pred_pad = np.concatenate([pred[:2], np.full_like(pred[:2], 500.0)])
    ab_pad = np.concatenate([ab[:2], np.full_like(ab[:2], -300.0)])
    padded = accuracy_counts(pred_pad, ab_pad, mask=np.array([1, 1, 0, 0], np.float32))
    np.testing.assert_array_equal(np.asarray(padded), np.asarray(base))
    a, b = auc_from_counts(base), auc_from_counts(padded)
    assert float(a["auc"]) == float(b["auc"])
    assert float(a["auc_rebalanced"]) == float(b["auc_rebalanced"])


def test_counts_of_two_halves_sum_to_the_whole_batch():
    rng = np.random.default_rng(1)
    ab = rng.uniform(-120, 120, (4, 8, 8, 2)).astype(np.float32)
    pred = rng.uniform(-120, 120, (4, 8, 8, 2)).astype(np.float32)
    whole = np.asarray(accuracy_counts(pred, ab))
    halves = np.asarray(accuracy_counts(pred[:2], ab[:2])) + np.asarray(accuracy_counts(pred[2:], ab[2:]))
    assert whole.shape == (auc_lib.NUM_BINS, T + 2)
    assert whole.dtype == np.float32
    assert whole.sum() == 4 * 8 * 8
    np.testing.assert_array_equal(halves, whole)


def _brute_force(pred, true):
    """Independent reference: explicit loops over thresholds and over true-colour bins."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    d = np.sqrt(((pred - true) ** 2).sum(-1)).reshape(-1)
    n_axis = int(np.ceil(2 * 110 / 10))
    ia = np.clip(np.floor((true[..., 0] + 110) / 10), 0, n_axis - 1).reshape(-1)
    ib = np.clip(np.floor((true[..., 1] + 110) / 10), 0, n_axis - 1).reshape(-1)
    trapz = getattr(np, "trapezoid", None) or np.trapz
    ts = np.arange(0, T + 1)

    def auc(dist):
        acc = [np.mean(dist <= t) for t in ts]
        return trapz(acc, ts) / T

    per_bin = []
    for a in range(n_axis):
        for b in range(n_axis):
            sel = (ia == a) & (ib == b)
            if sel.any():
                per_bin.append(auc(d[sel]))
    return auc(d), float(np.mean(per_bin))


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_brute_force_numpy(seed):
    rng = np.random.default_rng(seed)
    # Mostly in-gamut truth with a few out-of-range values (edge bins); errors up to ~200.
    ab = rng.normal(0, 45, (3, 16, 16, 2)).astype(np.float32)
    pred = (ab + rng.normal(0, 60, ab.shape)).astype(np.float32)
    want_auc, want_reb = _brute_force(pred, ab)
    got = ab_accuracy_auc(pred, ab)
    np.testing.assert_allclose(float(got["auc"]), want_auc, atol=1e-6)
    np.testing.assert_allclose(float(got["auc_rebalanced"]), want_reb, atol=1e-6)
    # The host path (numpy counts, float64) gives the same numbers.
    host = auc_from_counts(np.asarray(accuracy_counts(pred, ab)))
    np.testing.assert_allclose(float(host["auc"]), want_auc, atol=1e-6)
    np.testing.assert_allclose(float(host["auc_rebalanced"]), want_reb, atol=1e-6)


def test_jits_and_uses_the_mask():
    ab = _truth(n=2)
    pred = _offset(ab, 200.0)
    pred[0] = ab[0]
    got = jax.jit(ab_accuracy_auc)(pred, ab, np.array([1.0, 0.0], np.float32))
    assert float(got["auc"]) == pytest.approx(1.0, abs=1e-7)


def test_evaluator_pools_the_auc_over_the_real_pixels_of_the_split():
    # 6 images in batches of 4 over the test devices: the second batch has 2 padding rows.
    from colorjax import color, data
    from colorjax.training import evaluate
    from colorjax.platform import parallel
    from conftest import tiny_config

    config = tiny_config("unet", size=32, **{"eval.batch_size": 4, "eval.num_examples": 6})
    unused = types.SimpleNamespace(predict=lambda state, l, rng: None)
    ev = evaluate.Evaluator(config, objective=unused, mesh=parallel.create_mesh())
    got = ev.gray_baseline()
    batches = data.create_eval_iterator(config.data, split=config.eval.split,
                                        global_batch_size=4, num_examples=6)
    ab = np.concatenate([b["ab"][b["mask"] > 0] for b in batches]) * color.AB_SCALE
    want_auc, want_reb = _brute_force(np.zeros_like(ab), ab)
    np.testing.assert_allclose(got["auc"], want_auc, atol=1e-6)
    np.testing.assert_allclose(got["auc_rebalanced"], want_reb, atol=1e-6)
    assert {"auc", "auc_rebalanced"} <= set(evaluate.METRICS)
    assert "auc_counts" not in got
    assert "auc" in evaluate.markdown_table({"gray": got})
