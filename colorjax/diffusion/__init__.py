"""Diffusion machinery shared by the `diffusion` objective: noise schedules and samplers.

`schedules` holds the forward process q(x_t | x_0) and the conversions between the
network's output (ε or v) and the clean sample; `samplers` holds DDPM ancestral and DDIM
sampling, each one compiled loop (`lax.scan`) over the steps.
"""

from colorjax.diffusion.schedules import (PREDICTIONS, SCHEDULES, Schedule, make_schedule,
                                          predict_x0_eps, q_sample, training_target)
from colorjax.diffusion.samplers import SAMPLERS, ddim_sample, ddim_timesteps, ddpm_sample, sample

__all__ = ["PREDICTIONS", "SCHEDULES", "SAMPLERS", "Schedule", "make_schedule", "q_sample",
           "training_target", "predict_x0_eps", "ddim_sample", "ddim_timesteps", "ddpm_sample",
           "sample"]
