"""Noise schedules and the forward process of a Gaussian diffusion.

Timesteps are 0-based: t = 0..T-1 stands for the paper's t = 1..T, so ᾱ[0] is the least
noisy level and ᾱ[T-1] the noisiest. The forward process is
    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,  ε ~ N(0, I)        (Ho et al. 2020, eq. 4)
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from colorjax.config.checks import ConfigError

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("eps", "v")


@flax.struct.dataclass
class Schedule:
    """Per-timestep constants, each of shape (T,), float32."""

    betas: jax.Array
    alphas_cumprod: jax.Array  # ᾱ_t

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. 2020, §4: β linear from 1e-4 to 0.02 over T = 1000 steps.

    The endpoints are rescaled by 1000 / T so that other T give the same ᾱ curve
    (as improved-diffusion does); for T = 1000 they are exactly the paper's.
    """
    scale = 1000.0 / timesteps
    return np.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol and Dhariwal 2021, eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2),
    with offset s = 0.008 and β clipped to 0.999 to avoid a singularity at t = T."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    return np.clip(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0.0, max_beta)


def make_schedule(kind: str, timesteps: int, dtype=jnp.float32) -> Schedule:
    """The schedule by name; products taken in float64, stored as `dtype`."""
    if kind == "linear":
        betas = linear_betas(timesteps)
    elif kind == "cosine":
        betas = cosine_betas(timesteps)
    else:
        raise ConfigError("config.diffusion.schedule", f"{kind!r} is not allowed",
                          str(list(SCHEDULES)))
    alphas_cumprod = np.cumprod(1.0 - betas)
    return Schedule(betas=jnp.asarray(betas, dtype),
                    alphas_cumprod=jnp.asarray(alphas_cumprod, dtype))


def _per_example(values: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """values[t] shaped to broadcast against (N, ...) arrays of rank `ndim`."""
    v = values[t]
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Draw x_t ~ q(x_t | x_0) with the given noise; t is a scalar or one index per example."""
    abar = _per_example(schedule.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def training_target(prediction: str, schedule: Schedule, x0, t, noise) -> jax.Array:
    """What the network regresses: ε, or v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x_0 (Salimans and Ho 2022)."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        abar = _per_example(schedule.alphas_cumprod, t, x0.ndim)
        return jnp.sqrt(abar) * noise - jnp.sqrt(1.0 - abar) * x0
    raise ConfigError("config.diffusion.prediction", f"{prediction!r} is not allowed",
                      str(list(PREDICTIONS)))


def predict_x0_eps(prediction: str, schedule: Schedule, x_t, t, output,
                   clip: float | None = None) -> tuple[jax.Array, jax.Array]:
    """(x̂_0, ε̂) from the network's output at x_t.

    With `clip`, x̂_0 is clipped to [-clip, clip] and ε̂ recomputed from the clipped x̂_0, so
    that the sampler's next x_t stays consistent with the clipped prediction (as
    guided-diffusion's DDIM does).
    """
    abar = _per_example(schedule.alphas_cumprod, t, x_t.ndim)
    sqrt_abar, sqrt_one_minus = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
    if prediction == "eps":
        eps = output
        x0 = (x_t - sqrt_one_minus * eps) / sqrt_abar
    elif prediction == "v":
        # x_0 = sqrt(ᾱ) x_t - sqrt(1-ᾱ) v;  ε = sqrt(1-ᾱ) x_t + sqrt(ᾱ) v  (Salimans and Ho 2022)
        x0 = sqrt_abar * x_t - sqrt_one_minus * output
        eps = sqrt_one_minus * x_t + sqrt_abar * output
    else:
        raise ConfigError("config.diffusion.prediction", f"{prediction!r} is not allowed",
                          str(list(PREDICTIONS)))
    if clip is not None:
        x0 = jnp.clip(x0, -clip, clip)
        eps = (x_t - sqrt_abar * x0) / sqrt_one_minus
    return x0, eps
