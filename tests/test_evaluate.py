"""The evaluator's means: padding rows left out, sums kept on the devices, one fetch."""

import types

import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color, data, evaluate, metrics, parallel
from conftest import tiny_config


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
