"""Image-quality and colour metrics; each returns one value per image, shape (N,), except the
AuC colour accuracy (auc.py), which pools accumulable counts over all pixels of a set."""

from colorjax.metrics.auc import ab_accuracy_auc, accuracy_counts, auc_from_counts
from colorjax.metrics.image import (
    ciede2000,
    ciede2000_map,
    colorfulness,
    delta_e76,
    psnr,
    ssim,
)
from colorjax.metrics.lpips import LPIPS

__all__ = ["ssim", "psnr", "delta_e76", "ciede2000", "ciede2000_map", "colorfulness", "LPIPS",
           "accuracy_counts", "auc_from_counts", "ab_accuracy_auc"]
