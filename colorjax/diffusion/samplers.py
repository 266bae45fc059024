"""Samplers: DDPM ancestral (Ho et al. 2020) and DDIM (Song et al. 2021).

Each sampler is one `lax.scan` over its steps, so the network is traced once and the whole
loop compiles to a single XLA while-loop: no Python loop over steps, no per-step dispatch.

`model_fn(x_t, t)` is the network at noisy sample x_t (N, ...) and timesteps t (N,) int32,
returning its raw output (ε or v, per `prediction`). The predicted x̂_0 is clipped to
[-clip, clip] at every step (clip=None turns that off). `temperature` scales the noise the
stochastic samplers add at each step (x_T is drawn by the caller, see
`DiffusionObjective.sample`); 1 is the model's distribution.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from colorjax.config.checks import ConfigError
from colorjax.diffusion.schedules import Schedule, predict_x0_eps

SAMPLERS = ("ddim", "ddpm")
ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


def ddim_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """`steps` timesteps evenly spread over 0..T-1, both ends included, ascending.

    Including T-1 starts sampling at the noisiest level, where x_T ~ N(0, I) is right
    (Lin et al. 2024 show that skipping it hurts); steps = T gives every timestep.
    """
    if not 1 <= steps <= num_timesteps:
        raise ConfigError("config.sampler.steps", f"{steps} is not allowed",
                          f"1..{num_timesteps}")
    return np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int32)


def _timestep_vector(t, x):
    return jnp.full((x.shape[0],), t, jnp.int32)


def _noise_like(key, x):
    return jax.random.normal(key, x.shape, x.dtype)


def ddim_sample(model_fn: ModelFn, schedule: Schedule, x_T: jax.Array, rng: jax.Array, *,
                steps: int, eta: float = 0.0, prediction: str = "eps",
                clip: float | None = 1.0, temperature: float = 1.0) -> jax.Array:
    """DDIM (Song et al. 2021, eq. 12) from x_T over `steps` timesteps; the network is called
    exactly `steps` times. η = 0 is deterministic; η = 1 with steps = T is DDPM ancestral
    sampling with the posterior variance β̃."""
    ts = ddim_timesteps(schedule.num_timesteps, steps)[::-1]          # noisiest first
    prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)           # -1: the clean sample
    abar = schedule.alphas_cumprod
    abar_with_clean = jnp.concatenate([jnp.ones((1,), abar.dtype), abar])  # index t + 1

    def step(x, inputs):
        t, t_prev, key = inputs
        out = model_fn(x, _timestep_vector(t, x))
        x0, eps = predict_x0_eps(prediction, schedule, x, t, out, clip)
        a, a_prev = abar[t], abar_with_clean[t_prev + 1]
        x = jnp.sqrt(a_prev) * x0
        if eta > 0:  # static: η = 0 draws no noise at all
            sigma = eta * jnp.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
            x = x + jnp.sqrt(jnp.maximum(1 - a_prev - sigma**2, 0.0)) * eps
            x = x + temperature * sigma * _noise_like(key, x)
        else:
            x = x + jnp.sqrt(1 - a_prev) * eps
        return x, None

    keys = jax.random.split(rng, steps)
    x, _ = lax.scan(step, x_T, (jnp.asarray(ts), jnp.asarray(prev), keys))
    return x


def ddpm_sample(model_fn: ModelFn, schedule: Schedule, x_T: jax.Array, rng: jax.Array, *,
                prediction: str = "eps", clip: float | None = 1.0,
                temperature: float = 1.0) -> jax.Array:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) through all T timesteps, with x̂_0 from
    the network plugged into the posterior q(x_{t-1} | x_t, x̂_0) (Ho et al. eqs. 6-7):
    mean = c0_t x̂_0 + ct_t x_t, variance β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)."""
    betas, abar = schedule.betas, schedule.alphas_cumprod
    abar_prev = jnp.concatenate([jnp.ones((1,), abar.dtype), abar[:-1]])
    coef_x0 = betas * jnp.sqrt(abar_prev) / (1 - abar)
    coef_xt = (1 - abar_prev) * jnp.sqrt(1 - betas) / (1 - abar)
    std = jnp.sqrt(betas * (1 - abar_prev) / (1 - abar))  # 0 at t = 0: the last step is the mean
    T = schedule.num_timesteps

    def step(x, inputs):
        t, key = inputs
        out = model_fn(x, _timestep_vector(t, x))
        x0, _ = predict_x0_eps(prediction, schedule, x, t, out, clip)
        x = coef_x0[t] * x0 + coef_xt[t] * x + temperature * std[t] * _noise_like(key, x)
        return x, None

    keys = jax.random.split(rng, T)
    x, _ = lax.scan(step, x_T, (jnp.arange(T - 1, -1, -1, dtype=jnp.int32), keys))
    return x


def sample(name: str, model_fn: ModelFn, schedule: Schedule, x_T, rng, *, steps: int,
           eta: float, prediction: str, clip: float | None,
           temperature: float = 1.0) -> jax.Array:
    """Dispatch by sampler name ("ddim": `steps` and `eta` used; "ddpm": all T steps)."""
    if name == "ddim":
        return ddim_sample(model_fn, schedule, x_T, rng, steps=steps, eta=eta,
                           prediction=prediction, clip=clip, temperature=temperature)
    if name == "ddpm":
        return ddpm_sample(model_fn, schedule, x_T, rng, prediction=prediction, clip=clip,
                           temperature=temperature)
    raise ConfigError("config.sampler.name", f"{name!r} is not allowed", str(list(SAMPLERS)))
