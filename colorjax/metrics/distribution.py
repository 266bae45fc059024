"""Distribution distances between two image sets, on pretrained ImageNet features.

These compare the *sets* of colorized photos and ground-truth photos, not image pairs:

* `frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets
  (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017).
* `kernel_inception_distance`: the unbiased MMD^2 estimate with the cubic polynomial kernel
  (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018), averaged over random subsets.

The features are NOT Inception-v3's, so the numbers are not FID/KID and must not be reported
as such: they are the Fréchet distance / kernel distance on the global-average-pooled last
convolutional features of the shipped VGG16 (conv5_3 after ReLU, 512-d; callers name it
``fd_vgg16``) or of EfficientNet-Lite0 (the 1280-d pooled pre-classifier features;
``fd_effnet``). Both are genuine ImageNet networks the project already ships and hash-checks
(`colorjax.models.pretrained`, `colorjax.models.efficientnet`); no download is needed.

Inputs are RGB float arrays (N, H, W, 3) in [0, 1] of any size: `pooled_features` resizes
every image to 224x224 (bilinear, antialiased when shrinking, aspect ratio not kept: crop
first if that matters) inside the jitted forward, and runs the network in batches of
`batch_size` (the last batch zero-padded, so one compiled shape per input shape).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from colorjax.models.efficientnet import efficientnet_features, load_efficientnet_lite0
from colorjax.models.pretrained import load_params, vgg16_features

__all__ = ["FEATURE_NETS", "FEATURE_DIMS", "INPUT_SIZE", "pooled_features", "frechet_distance",
           "kernel_inception_distance"]

FEATURE_NETS = ("vgg16", "effnet")
FEATURE_DIMS = {"vgg16": 512, "effnet": 1280}
INPUT_SIZE = 224  # both networks were trained at 224x224
def check_images(rgb: Any, what: str = "rgb") -> np.ndarray:
    """(N, H, W, 3) float32 NumPy array, or a ValueError naming `what`."""
    x = np.asarray(rgb, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise ValueError(f"{what} must be RGB images (N, H, W, 3) with N >= 1, "
                         f"got shape {x.shape}")
    return x


def resize_input(rgb: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """(N, H, W, 3) -> (N, size, size, 3), bilinear (antialiased when shrinking); unchanged
    if already that size."""
    n, h, w, c = rgb.shape
    if (h, w) == (size, size):
        return rgb
    return jax.image.resize(rgb, (n, size, size, c), "bilinear")


def run_batched(fn: Callable, variables: Any, rgb: np.ndarray, batch_size: int) -> np.ndarray:
    """Apply jitted `fn(variables, batch)` over `rgb` in batches of min(batch_size, N); the
    last batch is zero-padded so every call has the same shape (one compilation)."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = rgb.shape[0]
    b = min(int(batch_size), n)
    out = []
    for i in range(0, n, b):
        batch = rgb[i:i + b]
        k = batch.shape[0]
        if k < b:
            batch = np.concatenate([batch, np.zeros((b - k, *batch.shape[1:]), batch.dtype)])
        out.append(np.asarray(fn(variables, batch))[:k])
    return np.concatenate(out, axis=0)


@jax.jit
def _vgg16_pooled(params: Any, rgb: jax.Array) -> jax.Array:
    # relu5_3 (vgg16_features applies LPIPS's scaling layer, i.e. the ImageNet mean/std
    # normalisation in [-1, 1] units that the LPIPS VGG16 expects), averaged over space.
    return jnp.mean(vgg16_features(params, resize_input(rgb))[-1], axis=(1, 2))


@jax.jit
def _effnet_pooled(variables: Any, rgb: jax.Array) -> jax.Array:
    return efficientnet_features(variables, resize_input(rgb))[1]


def _check_net(net: str) -> None:
    if net not in FEATURE_NETS:
        raise ValueError(f"net must be one of {FEATURE_NETS}, got {net!r}")


def pooled_features(rgb: Any, net: str, batch_size: int = 32) -> np.ndarray:
    """Global-average-pooled features (N, D) float64 of RGB images in [0, 1] (any size;
    resized to 224x224 bilinear inside).

    net="vgg16": the shipped LPIPS VGG16's conv5_3 after ReLU, D = 512.
    net="effnet": EfficientNet-Lite0's pooled pre-classifier (head) features, D = 1280.
    """
    _check_net(net)
    x = check_images(rgb)
    if net == "vgg16":
        fn, variables = _vgg16_pooled, load_params("vgg")
    else:
        fn, variables = _effnet_pooled, load_efficientnet_lite0()
    return run_batched(fn, variables, x, batch_size).astype(np.float64)


def _check_features(feat_a: Any, feat_b: Any, min_samples: int = 2
                    ) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(feat_a, np.float64)
    b = np.asarray(feat_b, np.float64)
    for name, f in (("feat_a", a), ("feat_b", b)):
        if f.ndim != 2:
            raise ValueError(f"{name} must be a 2-d array (N, D) of features, got shape {f.shape}")
        if f.shape[0] < min_samples:
            raise ValueError(f"{name} needs at least {min_samples} samples, got {f.shape[0]}")
        if not np.all(np.isfinite(f)):
            raise ValueError(f"{name} contains non-finite values")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feat_a and feat_b differ in feature dimension: {a.shape[1]} vs "
                         f"{b.shape[1]}")
    return a, b


def _trace_sqrt_product(ca: np.ndarray, cb: np.ndarray) -> float:
    """Tr((S_a S_b)^(1/2)) for S = C^T C of the scaled, centred samples `ca` (N_a, D) and
    `cb` (N_b, D), exactly and without a matrix square root.

    S_a S_b = A^T A B^T B has the nonzero eigenvalues of (A B^T)(A B^T)^T, the squared
    singular values of A B^T, so the trace is A B^T's nuclear norm: an N_a x N_b SVD when
    that is the smaller problem (few images, wide features: always for compare's tables),
    else sqrt(S_a) S_b sqrt(S_a)'s eigenvalues in feature space. Either way no sqrtm of a
    near-singular D x D product (slow, and non-finite without a regulariser)."""
    if ca.shape[0] * cb.shape[0] <= ca.shape[1] ** 2:
        return float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum())
    s_a, s_b = ca.T @ ca, cb.T @ cb
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    return float(np.sqrt(np.clip(inner, 0.0, None)).sum())


def frechet_distance(feat_a: Any, feat_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, D), (N_b, D):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017), in float64,
    with unbiased (N - 1) covariances. The trace of the square root is computed exactly
    from eigenvalues (`_trace_sqrt_product`), so it is finite with fewer samples than
    dimensions, where `scipy.linalg.sqrtm` needs a regulariser. Each set needs at least 2
    samples. On VGG16 or EfficientNet-Lite0 features this is "FD on VGG16/EfficientNet
    features", not FID.
    """
    a, b = _check_features(feat_a, feat_b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca = (a - mu_a) / np.sqrt(len(a) - 1)
    cb = (b - mu_b) / np.sqrt(len(b) - 1)
    diff = mu_a - mu_b
    # Tr(S) = the sum of the squared scaled deviations.
    return float(diff @ diff + np.sum(ca * ca) + np.sum(cb * cb)
                 - 2.0 * _trace_sqrt_product(ca, cb))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Bińkowski et al. 2018, eq. for KID: k(x, y) = (x.y / d + 1)^3.
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples (m >= 2): the within-set means leave out
    the diagonal k(x_i, x_i)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    within = ((k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_inception_distance(feat_a: Any, feat_b: Any, num_subsets: int = 100,
                              subset_size: int | None = None, seed: int = 0
                              ) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3 (Bińkowski et al. 2018), over `num_subsets` random subsets.

    Each subset draws m = min(N_a, N_b, subset_size or 1000) rows of each set without
    replacement (NumPy `default_rng(seed)`: deterministic per seed). The std is over subsets
    (ddof 0; 0.0 for one subset). The name follows the paper; on VGG16 or EfficientNet-Lite0
    features this is a kernel distance on those features, not Inception's KID.
    """
    a, b = _check_features(feat_a, feat_b)
    if not isinstance(num_subsets, (int, np.integer)) or num_subsets < 1:
        raise ValueError(f"num_subsets must be a positive integer, got {num_subsets!r}")
    if subset_size is not None and (not isinstance(subset_size, (int, np.integer))
                                    or subset_size < 2):
        raise ValueError(f"subset_size must be None or an integer >= 2, got {subset_size!r}")
    m = min(a.shape[0], b.shape[0], 1000 if subset_size is None else int(subset_size))
    rng = np.random.default_rng(seed)
    values = np.empty(int(num_subsets))
    for s in range(int(num_subsets)):
        ia = rng.choice(a.shape[0], m, replace=False)
        ib = rng.choice(b.shape[0], m, replace=False)
        values[s] = _mmd2_unbiased(a[ia], b[ib])
    return float(values.mean()), float(values.std())
