"""Image-quality and colour metrics; each returns one value per image, shape (N,), except the
AuC colour accuracy (auc.py), which pools accumulable counts over all pixels of a set, the
distribution distances of two image sets on pretrained features (distribution.py), the
classifier-based semantic interpretability of a set (semantic.py), and FID and IS on the FID
Inception-v3 with weights the user supplies (inception_scores.py)."""

from colorjax.metrics.auc import ab_accuracy_auc, accuracy_counts, auc_from_counts
from colorjax.metrics.distribution import (
    FEATURE_NETS,
    frechet_distance,
    kernel_inception_distance,
    pooled_features,
)
from colorjax.metrics.image import (
    ciede2000,
    ciede2000_map,
    colorfulness,
    delta_e76,
    psnr,
    ssim,
)
from colorjax.metrics.inception_scores import fid, inception_outputs, inception_score
from colorjax.metrics.lpips import LPIPS
from colorjax.metrics.semantic import (
    classify,
    labels_from_filenames,
    semantic_interpretability,
    wnids_from_folder,
)

__all__ = ["ssim", "psnr", "delta_e76", "ciede2000", "ciede2000_map", "colorfulness", "LPIPS",
           "accuracy_counts", "auc_from_counts", "ab_accuracy_auc", "FEATURE_NETS",
           "pooled_features", "frechet_distance", "kernel_inception_distance", "classify",
           "labels_from_filenames", "semantic_interpretability", "wnids_from_folder",
           "inception_outputs", "fid", "inception_score"]
