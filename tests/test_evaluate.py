"""The evaluator's means: padding rows left out, sums kept on the devices, one fetch."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import color, data, metrics
from colorjax.training import evaluate
from colorjax.platform import parallel
from conftest import tiny_config


@pytest.mark.slow
def test_gray_baseline_is_the_plain_mean_over_the_real_images():
    # 6 images in batches of 4: the second batch carries 2 padding rows (mask 0).
    config = tiny_config("unet", size=32, **{"eval.batch_size": 4, "eval.num_examples": 6})
    mesh = parallel.create_mesh()
    # An "objective" that predicts no colour: its evaluation must equal the gray baseline.
    gray_model = types.SimpleNamespace(
        predict=lambda state, l, rng: jnp.zeros(l.shape[:-1] + (2,), l.dtype))
    ev = evaluate.Evaluator(config, objective=gray_model, mesh=mesh)
    got = ev.gray_baseline()
    assert got["num_examples"] == 6
    as_model = ev.evaluate(state=None)
    for k, v in got.items():
        np.testing.assert_allclose(as_model[k], v, rtol=1e-6, err_msg=k)

    batches = list(data.create_eval_iterator(config.data, split=config.eval.split,
                                             global_batch_size=4, num_examples=6))
    assert len(batches) == 2
    assert np.sum(batches[1]["mask"]) == 2  # the case under test: padding exists
    l = np.concatenate([b["l"][b["mask"] > 0] for b in batches])
    ab = np.concatenate([b["ab"][b["mask"] > 0] for b in batches])
    assert len(l) == 6
    lab_true = color.model_outputs_to_lab(l, ab)
    lab_gray = color.model_outputs_to_lab(l, np.zeros_like(ab))
    # Independent of the evaluator's code: per-image metrics, then NumPy's mean.
    want_ciede = np.mean(np.asarray(metrics.ciede2000(lab_gray, lab_true)))
    want_mse = np.mean(ab ** 2)
    np.testing.assert_allclose(got["ciede2000"], want_ciede, rtol=1e-5)
    np.testing.assert_allclose(got["loss"], want_mse, rtol=1e-5)


def test_running_sums_add_on_device():
    a = {"x": jnp.float32(1.5), "count": jnp.float32(2.0)}
    b = {"x": jnp.float32(2.0), "count": jnp.float32(3.0)}
    out = evaluate._add_sums(a, b)
    assert isinstance(out["x"], jax.Array)
    assert float(out["x"]) == 3.5
    assert float(out["count"]) == 5.0


def test_a_nan_metric_stays_nan_and_fails_the_evaluation():
    """NaN metrics (a model whose predictions are not finite) are summed as NaN, never as
    0, a perfect score; PSNR's +inf (a perfect image) still counts as 100 dB; and
    `require_finite_metrics` fails a row that has one (issue 37)."""
    import pytest

    per_image = {"ciede2000": jnp.array([jnp.nan, 2.0, 7.0]),
                 "psnr": jnp.array([jnp.inf, 30.0, 99.0])}
    mask = jnp.array([1.0, 1.0, 0.0])  # the third image is padding
    sums = jax.device_get(evaluate._masked_sums(per_image, mask))
    assert np.isnan(sums["ciede2000"])
    assert sums["psnr"] == 130.0 and sums["count"] == 2.0
    means = evaluate._means(sums)
    assert np.isnan(means["ciede2000"])
    rows = {"unet": means, "gray baseline (ab = 0)": {"ciede2000": 14.0, "psnr": 20.0}}
    assert "| unet | 65.0000 | nan |" in evaluate.markdown_table(rows)  # psnr, ciede2000
    with pytest.raises(evaluate.NonFiniteMetricsError,
                       match=r"^metrics came out NaN/Inf at step 3 \(unet: ciede2000\)"):
        evaluate.require_finite_metrics(rows, "at step 3")
    evaluate.require_finite_metrics({"gray": rows["gray baseline (ab = 0)"]}, "at step 3")


@pytest.mark.slow
def test_every_metric_of_a_non_finite_prediction_is_nan():
    """ΔE76 and CIEDE2000 of a NaN prediction came out 0, a perfect score (their safe
    square roots): every metric of such an image is NaN now, the others untouched, and
    the split's AuC is NaN too (issue 37)."""
    rng = np.random.default_rng(0)
    l = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 1)), jnp.float32)
    ab_true = jnp.asarray(rng.uniform(-0.3, 0.3, (2, 16, 16, 2)), jnp.float32)
    ab_pred = ab_true.at[0, 3, 4, 1].set(jnp.nan) * 0.5
    no_lpips = lambda x, y: jnp.zeros(x.shape[0])
    per = jax.device_get(evaluate.image_metrics(l, ab_pred, ab_true, no_lpips))
    for k, v in per.items():
        assert np.isfinite(v[1]), k
        assert np.isnan(v[0]) == (k != "colorfulness_true"), (k, v[0])
    sums = evaluate._batch_sums(l, ab_pred, ab_true, no_lpips, jnp.ones(2))
    means = evaluate._means(jax.device_get(sums))
    assert np.isnan(means["ciede2000"]) and np.isnan(means["auc"])
    assert "nonfinite_images" not in means
    finite = evaluate._means(jax.device_get(
        evaluate._batch_sums(l, ab_true * 0.5, ab_true, no_lpips, jnp.ones(2))))
    assert all(np.isfinite(v) for v in finite.values())
