"""Image-quality and colour metrics; each returns one value per image, shape (N,)."""

from colorjax.metrics.image import (
    ciede2000,
    ciede2000_map,
    colorfulness,
    delta_e76,
    psnr,
    ssim,
)
from colorjax.metrics.lpips import LPIPS

__all__ = ["ssim", "psnr", "delta_e76", "ciede2000", "ciede2000_map", "colorfulness", "LPIPS"]
