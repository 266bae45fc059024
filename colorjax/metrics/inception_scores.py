"""FID and the Inception Score proper: on the FID Inception-v3 (`colorjax.models.inception`)
with the weights the user supplies (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``).

* FID (Heusel et al. 2017): `distribution.frechet_distance` of the 2048-d pool3 features of
  two image sets.
* IS (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016):
  exp(E_x KL(p(y|x) || p(y))), p(y|x) the softmax over the 1008 classes of pool3 times the
  fc weight without its bias (as the original code does), p(y) its mean over the images of
  a split. The original splits 50,000 images into 10 and reports the mean and std over the
  splits; `inception_score` takes the number of splits, and colorjax.compare uses 1 (the
  whole, small, eval set), saying so and giving the number of images: IS on a few hundred
  images is biased low and not comparable to published 50k-image numbers.

Inputs are RGB (N, H, W, 3) in [0, 1], any size (resized to 299 inside).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from colorjax.metrics.distribution import check_images, frechet_distance, run_batched
from colorjax.models.inception import inception_apply

__all__ = ["inception_outputs", "fid", "inception_score"]


def _pool3_and_unbiased_logits(variables: Any, rgb) -> Any:
    import jax.numpy as jnp
    out = inception_apply(variables, rgb)
    return jnp.concatenate([out["pool3"], out["logits_unbiased"]], axis=-1)


def inception_outputs(rgb: Any, variables: Any, batch_size: int = 16
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(pool3 features (N, 2048), IS logits (N, 1008)), float64, of RGB images in [0, 1]
    on the FID Inception with `variables` (`colorjax.models.inception.load_inception`)."""
    x = check_images(rgb)
    both = run_batched(_pool3_and_unbiased_logits, variables, x, batch_size).astype(np.float64)
    return both[:, :2048], both[:, 2048:]


def fid(feat_a: Any, feat_b: Any) -> float:
    """FID: the Fréchet distance of two sets of pool3 features."""
    return frechet_distance(feat_a, feat_b)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def inception_score(logits: Any, splits: int = 1) -> tuple[float, float]:
    """(mean, std over the splits) of exp(E_x KL(p(y|x) || p(y))) from logits (N, K), with
    the images cut into `splits` consecutive parts (std 0 for one split). It lies in
    [1, K]: 1 when every image gets the same distribution, K for confident, distinct,
    evenly spread classes."""
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or not np.all(np.isfinite(z)):
        raise ValueError(f"logits must be a finite (N, K) array, got shape {z.shape}")
    if not isinstance(splits, (int, np.integer)) or not 1 <= splits <= z.shape[0]:
        raise ValueError(f"splits must be an integer in [1, N={z.shape[0]}], got {splits!r}")
    scores = []
    for part in np.array_split(z, int(splits)):
        log_p = _log_softmax(part)
        p = np.exp(log_p)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_marginal = np.log(p.mean(axis=0))
            # A class no image gives any (underflowed) probability adds nothing, not 0 * inf.
            kl = np.sum(np.where(p > 0, p * (log_p - log_marginal), 0.0), axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))
