"""Scoring one model's predictions on a split for the comparison table: per-image metrics,
bootstrap intervals, FID/IS when Inception weights are given."""

from __future__ import annotations

import os
import pathlib

from colorjax.compare.runs import last_line


GRAY, TRUTH = "gray (ab = 0)", "truth"
NETS = ("vgg16", "effnet")


class Evaluation:
    """Per-image predictions and metrics of restored runs on the same images."""

    def __init__(self, num_images: int, bootstrap: int, inception=None):
        import jax

        self.jax = jax
        self.num_images = num_images
        self.bootstrap = bootstrap
        self._scorers = {}  # split -> the Evaluator of its first run (scores gray)
        self.reference = {}  # split -> {"l", "ab", "source"}: the first run's images
        self.indices = {}  # split -> bootstrap indices
        from colorjax.metrics import distribution, semantic
        self.dist, self.semantic = distribution, semantic
        self.truth_features = {}  # (split, net) -> features
        self.inception = inception  # FID Inception variables, or None: FID/IS not computed
        self.truth_inception = {}  # split -> (pool3 features, IS logits) of the truth

    def predict_split(self, config, objective, state, split):
        """(l, ab_pred, ab_true, per-image metrics) over `split` of the run's eval data: the
        training loop's Evaluator (its batches, hints, keys and metrics), image by image."""
        from colorjax.platform import parallel
        from colorjax.training.evaluate import Evaluator

        mesh = parallel.create_mesh()
        evaluator = Evaluator(config, objective, mesh)
        state = self.jax.device_put(state, parallel.replicated(mesh))
        l, ab_pred, ab_true, per_image = evaluator.per_image(state, split)
        self._scorers[split] = evaluator  # scores the gray row of the split
        self.seconds_per_image = evaluator.seconds_per_image  # the row's "infer s/img"
        return l, ab_pred, ab_true, {k: _finite(v) for k, v in per_image.items()}

    def set_reference(self, split, config, l, ab_true, source: str):
        """The images every run of `split` must be evaluated on, with the gray row."""
        import numpy as np

        from colorjax import color

        scores = self._scorers[split].score(l, np.zeros_like(ab_true), ab_true)
        per = {k: _finite(v) for k, v in scores.items()}
        from colorjax.compare.report import bootstrap_indices
        self.indices[split] = (bootstrap_indices(len(l), self.bootstrap)
                               if self.bootstrap > 0 else None)
        truth_rgb = color.model_outputs_to_rgb(l, ab_true)
        labels, note = imagenet_labels(config, split, len(l))
        self.reference[split] = {"l": l, "ab": ab_true, "source": source, "rgb": truth_rgb,
                                 "lpips_net": config.eval.lpips_net, "labels": labels,
                                 "labels_note": note}
        gray_rgb = color.gray_rgb(l)
        return self.row(split, per, gray_rgb), gray_rgb, truth_rgb

    def row(self, split, per_image: dict, rgb) -> dict:
        """A table row of per-image metrics, with the distribution and SI columns."""
        from colorjax.compare.report import mean_and_interval

        idx = self.indices[split]
        row = {"status": "ok",
               "metrics": {k: mean_and_interval(v, idx) for k, v in per_image.items()},
               "per_image": {k: [float(x) for x in v] for k, v in per_image.items()},
               "num_images": int(len(rgb))}
        row["distribution"] = self.distribution(split, rgb)
        row["si"] = self.si(split, rgb)
        row.update(self.inception_columns(split, rgb))
        return row

    def truth_row(self, split) -> dict:
        """The truth as a row: its colorfulness and SI (its other metrics are trivial)."""
        from colorjax.compare.report import mean_and_interval

        ref = self.reference[split]
        from colorjax import metrics
        colorful = _finite(self.jax.device_get(metrics.colorfulness(ref["rgb"])))
        return {"status": "ok", "is_truth": True, "num_images": int(len(ref["rgb"])),
                "metrics": {"colorfulness": mean_and_interval(colorful, self.indices[split])},
                "si": self.si(split, ref["rgb"], truth=True), "fid": "—", "is": "—",
                **self.inception_columns(split, ref["rgb"], truth=True)}

    def inception_columns(self, split, rgb, truth: bool = False) -> dict:
        """{"fid": {"value", "num_images"}, "is": {"value", "splits", "num_images"}} of `rgb`
        (FID against the split's true images; the truth's own FID stays "—"); {} without
        Inception weights (the table says "not computed"); {"error"} cells if it fails."""
        if self.inception is None:
            return {}
        from colorjax.metrics import inception_scores as ins

        def failed(e: Exception) -> dict:
            return {"error": last_line(str(e)) or type(e).__name__}

        n = int(len(rgb))
        try:
            if split not in self.truth_inception:
                self.truth_inception[split] = ins.inception_outputs(
                    self.reference[split]["rgb"], self.inception)
            truth_feats, truth_logits = self.truth_inception[split]
            feats, logits = ((truth_feats, truth_logits) if truth
                             else ins.inception_outputs(rgb, self.inception))
        except Exception as e:  # noqa: BLE001  a column that fails is said in the row
            return {"is": failed(e), **({} if truth else {"fid": failed(e)})}
        out = {}
        try:
            out["is"] = {"value": ins.inception_score(logits, splits=1)[0], "splits": 1,
                         "num_images": n}
        except Exception as e:  # noqa: BLE001
            out["is"] = failed(e)
        if not truth:
            try:
                out["fid"] = {"value": ins.fid(feats, truth_feats), "num_images": n}
            except Exception as e:  # noqa: BLE001
                out["fid"] = failed(e)
        return out

    def distribution(self, split, rgb) -> dict:
        """fd_<net> and kid_<net> of `rgb` against the split's true images."""
        out = {}
        ref = self.reference[split]
        for net in NETS:
            try:
                key = (split, net)
                if key not in self.truth_features:
                    self.truth_features[key] = self.dist.pooled_features(ref["rgb"], net)
                truth = self.truth_features[key]
                feats = self.dist.pooled_features(rgb, net)
                n = int(len(rgb))
                out[f"fd_{net}"] = {"value": float(self.dist.frechet_distance(feats, truth)),
                                    "num_images": n}
                # Subsets of half the images: whole-set subsets would all be the same set
                # (eval sets are small), and their std 0 would say nothing.
                half = max(2, min(len(feats), len(truth)) // 2)
                mean, std = self.dist.kernel_inception_distance(feats, truth,
                                                                subset_size=min(1000, half))
                out[f"kid_{net}"] = {"value": float(mean), "std": float(std), "num_images": n}
            except Exception as e:  # noqa: BLE001  a column that fails is said in the row
                why = last_line(str(e)) or type(e).__name__
                out.setdefault(f"fd_{net}", {"error": why})
                out.setdefault(f"kid_{net}", {"error": why})
        return out

    def si(self, split, rgb, truth: bool = False) -> dict:
        """Semantic interpretability: top-1/top-5 against the labels where the split has
        them, else the agreement of a classifier's predictions with those on the truth."""
        ref = self.reference[split]
        try:
            labels = ref.get("labels")
            if labels is not None:
                return {k: float(v) for k, v in
                        self.semantic.semantic_interpretability(rgb, labels=labels).items()}
            # The truth's agreement with itself is 1 by definition: the ceiling, shown.
            return {k: float(v) for k, v in self.semantic.semantic_interpretability(
                rgb, reference_rgb=ref["rgb"] if not truth else rgb).items()}
        except Exception as e:  # noqa: BLE001
            return {"si_error": last_line(str(e)) or type(e).__name__}


def imagenet_labels(config, split: str, n: int):
    """(ImageNet class indices of the first `n` images of the eval `split`, how they were
    found) when the eval data is a prepared folder of ImageNet-named photos
    (`<wnid>_<anything>`, with the 1000 wnids found by `semantic.wnids_from_folder` in the
    folder or the split's subfolder); (None, why not) otherwise."""
    from colorjax.metrics import semantic

    d = config.data
    folder = d.eval_folder if (d.eval_folder or d.eval_name) else d.folder
    if not folder:
        return None, "the eval data is not a folder of photos"
    try:
        from colorjax.data.config import check_fields
        from colorjax.data.sources import open_split

        source = open_split(check_fields(d), split, True, "config.eval.split")
        records = source._open()
        paths = []
        for k in range(n):
            p = records[k]["path"]
            paths.append(p.decode() if isinstance(p, bytes) else str(p))
        root = pathlib.Path(os.path.expanduser(folder))
        wnids = None
        for where in [root, *sorted({(root / p).parent for p in paths})]:
            try:
                wnids = semantic.wnids_from_folder(where)
                break
            except (ValueError, FileNotFoundError):
                continue
        if wnids is None:
            return None, f"{root} does not hold the 1000 ImageNet wnids in its file names"
        return semantic.labels_from_filenames(paths, wnids), f"labels from the file names in {root}"
    except Exception as e:  # noqa: BLE001  no labels: SI is the agreement with the truth
        return None, last_line(f"{type(e).__name__}: {e}")


def _finite(v):
    """Per-image values with PSNR's +inf (a perfect image) at 100, as the Evaluator does;
    NaN stays NaN (`evaluate_split` fails such a model: it must never read as a 0)."""
    import numpy as np
    v = np.asarray(v, np.float64)
    return np.where(np.isposinf(v), 100.0, v)


def num_params(objective, state) -> int:
    """Parameters of the exported inference variables."""
    import jax
    import numpy as np
    params = objective.inference_variables(state)["params"]
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))
