"""Tests for colorjax.metrics.distribution: the Fréchet distance and the kernel (KID-style)
distance of two feature sets, and the pooled VGG16 / EfficientNet-Lite0 features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from colorjax.metrics import distribution as dist


def _gauss(rng, n, d, shift=0.0, scale=None):
    """n samples of a correlated Gaussian in d dimensions (fixed mixing per `scale`)."""
    mix = np.eye(d) if scale is None else scale
    return rng.standard_normal((n, d)) @ mix + shift


def _fd_by_sqrtm(a, b):
    """Independent FD, as pytorch-fid computes it: np.cov and scipy.linalg.sqrtm of the
    product of the covariances (well conditioned here: more samples than dimensions)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(scipy.linalg.sqrtm(s_a @ s_b))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b)
                 - 2 * np.trace(root))


def test_frechet_distance_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    d = 16
    mix_a = rng.standard_normal((d, d)) / np.sqrt(d)
    mix_b = rng.standard_normal((d, d)) / np.sqrt(d)
    a = _gauss(rng, 300, d, 0.0, mix_a)
    b = _gauss(rng, 250, d, 0.3, mix_b)
    got, want = dist.frechet_distance(a, b), _fd_by_sqrtm(a, b)
    assert want > 1.0
    assert abs(got - want) <= 1e-6 * abs(want), (got, want)
    # Symmetric, and a float.
    assert isinstance(got, float)
    assert abs(dist.frechet_distance(b, a) - got) <= 1e-6 * abs(got)


def test_frechet_distance_with_few_samples_matches_sqrtm():
    """The sample-space branch (N_a N_b <= D^2: an SVD of A B^T instead of D x D algebra)
    against sqrtm on a product that is singular but still within sqrtm's reach."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((25, 20)), rng.standard_normal((15, 20)) + 0.2
    got, want = dist.frechet_distance(a, b), _fd_by_sqrtm(a, b)
    assert want > 1.0 and abs(got - want) <= 1e-6 * want, (got, want)
    assert abs(dist.frechet_distance(b, a) - got) <= 1e-9 * got


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_mean_shift():
    rng = np.random.default_rng(1)
    d = 12
    a = _gauss(rng, 200, d, 0.0, rng.standard_normal((d, d)))
    scale = np.trace(np.cov(a, rowvar=False))
    assert abs(dist.frechet_distance(a, a)) < 1e-6 * scale
    b = _gauss(rng, 200, d, 0.0, np.eye(d))
    base = dist.frechet_distance(a, b)
    values = [dist.frechet_distance(a, b + s) for s in (0.5, 1.0, 2.0)]
    assert base < values[0] < values[1] < values[2]
    # A pure mean shift changes only the mean term (the covariances are unchanged).
    gap = a.mean(0) - b.mean(0)
    np.testing.assert_allclose(values[1] - base, np.sum((gap - 1.0) ** 2) - np.sum(gap ** 2),
                               rtol=1e-6)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((12, 32))
    value = dist.frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


def test_frechet_distance_errors():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match="feat_b needs at least 2 samples"):
        dist.frechet_distance(a, a[:1])
    with pytest.raises(ValueError, match="feat_a needs at least 2 samples"):
        dist.frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="feature dimension"):
        dist.frechet_distance(a, a[:, :3])
    with pytest.raises(ValueError, match="2-d"):
        dist.frechet_distance(a[0], a)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        dist.frechet_distance(a, bad)


def _mmd2_biased(x, y):
    """The biased (V-statistic) MMD^2, diagonal included, for the comparison."""
    k = lambda p, q: (p @ q.T / p.shape[1] + 1.0) ** 3  # noqa: E731
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def test_kid_is_unbiased_on_one_distribution_and_positive_when_shifted():
    d, m, trials = 8, 40, 300
    unbiased, biased, shifted = [], [], []
    for t in range(trials):
        rng = np.random.default_rng(100 + t)
        x, y = rng.standard_normal((m, d)), rng.standard_normal((m, d))
        # subset_size = m = N: one subset is the whole sets, so this is the plain estimate.
        unbiased.append(dist.kernel_inception_distance(x, y, num_subsets=1, seed=t)[0])
        biased.append(_mmd2_biased(x, y))
        if t < 30:
            shifted.append(dist.kernel_inception_distance(x, y + 0.5, num_subsets=1)[0])
    unbiased, biased = np.array(unbiased), np.array(biased)
    se = unbiased.std(ddof=1) / np.sqrt(trials)
    assert abs(unbiased.mean()) < 3 * se, (unbiased.mean(), se)
    # The biased estimate of the same pairs is clearly positive on average...
    assert biased.mean() > 10 * se + abs(unbiased.mean())
    # ... and a shifted distribution is clearly positive for the unbiased one.
    assert np.mean(shifted) > 20 * se and min(shifted) > 0


def test_kid_subsets_symmetry_determinism_and_errors():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((120, 10))
    b = rng.standard_normal((100, 10)) + 0.4
    c = rng.standard_normal((120, 10))
    # Whole-set subsets (m = N_a = N_b): exactly symmetric.
    full_ab = dist.kernel_inception_distance(a, c, num_subsets=3)
    full_ba = dist.kernel_inception_distance(c, a, num_subsets=3)
    np.testing.assert_allclose(full_ab[0], full_ba[0], rtol=1e-12)
    assert full_ab[1] < 1e-12 * max(1.0, abs(full_ab[0]))  # every subset is the whole set
    # Random subsets: deterministic per seed, different across seeds.
    k1 = dist.kernel_inception_distance(a, b, num_subsets=20, subset_size=50, seed=7)
    k2 = dist.kernel_inception_distance(a, b, num_subsets=20, subset_size=50, seed=7)
    k3 = dist.kernel_inception_distance(a, b, num_subsets=20, subset_size=50, seed=8)
    assert k1 == k2 and k1 != k3
    assert isinstance(k1[0], float) and isinstance(k1[1], float)
    # Shifted sets: clearly positive; same-distribution sets: near 0 at the same subset size.
    same = dist.kernel_inception_distance(a, c, num_subsets=20, subset_size=50, seed=7)
    assert k1[0] > 5 * k1[1] / np.sqrt(20) and k1[0] > 10 * abs(same[0])
    # Symmetric in distribution: swapping the sets changes only which subsets are drawn.
    k_swap = dist.kernel_inception_distance(b, a, num_subsets=20, subset_size=50, seed=7)
    assert abs(k_swap[0] - k1[0]) < 4 * (k1[1] + k_swap[1]) / np.sqrt(20)
    with pytest.raises(ValueError, match="num_subsets"):
        dist.kernel_inception_distance(a, b, num_subsets=0)
    with pytest.raises(ValueError, match="subset_size"):
        dist.kernel_inception_distance(a, b, subset_size=1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        dist.kernel_inception_distance(a[:1], b)


def _photos():
    """Three colour pictures (different sizes are resized inside) and their gray versions
    (luminance replicated to three channels)."""
    yy, xx = np.mgrid[0:96, 0:128] / 95.0
    imgs = []
    for k in range(3):
        r = 0.5 + 0.5 * np.sin((3 + k) * xx)
        g = 0.5 + 0.5 * np.cos((2 + k) * yy)
        b = np.clip(xx * yy + 0.1 * k, 0, 1)
        imgs.append(np.stack([r, g, b], -1))
    rgb = np.stack(imgs).astype(np.float32)
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return rgb, np.repeat(lum[..., None], 3, axis=-1)


@pytest.mark.slow
@pytest.mark.parametrize("net,dim", [("vgg16", 512), ("effnet", 1280)])
def test_pooled_features(net, dim):
    rgb, gray = _photos()
    f = dist.pooled_features(rgb, net, batch_size=2)  # 2 + a zero-padded batch of 1
    assert f.shape == (3, dim) and f.dtype == np.float64
    assert np.all(np.isfinite(f)) and np.all(f >= 0)  # both end in a ReLU / ReLU6
    np.testing.assert_array_equal(f, dist.pooled_features(rgb, net, batch_size=2))
    # Another batching (another compiled shape) agrees to float32 rounding.
    np.testing.assert_allclose(f, dist.pooled_features(rgb, net, batch_size=3), rtol=1e-4,
                               atol=1e-4 * np.abs(f).max())
    g = dist.pooled_features(gray, net, batch_size=3)
    # Gray and colour versions of a picture are told apart: their feature distance is a
    # sizeable part of the features' size.
    gap = np.linalg.norm(f - g, axis=1) / np.linalg.norm(f, axis=1)
    assert np.all(gap > 0.05), gap


def test_pooled_features_errors():
    with pytest.raises(ValueError, match=r"net must be one of \('vgg16', 'effnet'\).*'inception'"):
        dist.pooled_features(np.zeros((1, 32, 32, 3)), "inception")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        dist.pooled_features(np.zeros((32, 32, 3)), "effnet")
    with pytest.raises(ValueError, match="batch_size"):
        dist.pooled_features(np.zeros((1, 32, 32, 3)), "effnet", batch_size=0)
