"""Train and compare several colorizers on the same images: `python -m colorjax.compare`.

    python -m colorjax.compare --configs=configs/unet.py:cpu,configs/unetgan.py:cpu \\
        --workdir=runs/compare --set=data.image_size=32 --set=num_train_steps=300
    python -m colorjax.compare --all --workdir=runs/compare          # every config's :cpu
    python -m colorjax.compare --all --workdir=runs/compare --eval_only \\
        --set=data.eval_folder=photos/   # the same runs, evaluated on other photos

Each model is trained in `DIR/<name>` (name: the config file's stem and variant, e.g.
`unet_cpu`) by the real CLI, `python -m colorjax.main --config=... --workdir=DIR/<name>
--config.<field>=<value>...` (one per `--set`), in a subprocess whose output goes to
`DIR/<name>/train.log`; a finished run is reused and an unfinished one resumes (the CLI
does both). Then, in this process, each run is restored (`checkpoint.restore_run`, with its
saved config and the `--set` fields that are runtime fields: data, eval, sampler, ...) and
predicts every image of the split its eval data config names; per-image metrics (`evaluate.image_metrics`, LPIPS as the Evaluator builds it) give the mean and a
95% percentile bootstrap interval (resampling images, seed 0, the same resamples for every
row). The gray baseline (ab = 0) is a row too. A model whose training or evaluation fails
is a row saying why; the exit status is nonzero only when every model failed.

Writes `DIR/compare.md`, `DIR/compare.json`, `DIR/compare_grid.png` (gray first, a row per
model, truth last) and `DIR/plots/<metric>.png` (each run's eval metrics against the step).

`--exports=DIR,...` adds exported models (`--mode=export`, or a published model converted by
`python -m colorjax.convert`) as rows, named `<dir> (export)`, evaluated on the same images
as the runs (the first run's eval data and sizes, with the `--set` runtime fields; with no
runs, the first export's config with them); they are not trained.

FID and IS proper need `--inception_weights=PATH`, pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth` (sha256-checked, read without running pickled code):
then every row gets the FID of its images against the split's true images and the IS of its
images (one split over the eval images), with the number of images; without it the columns
say "not computed" (`colorjax.metrics.inception_scores`).
"""

from __future__ import annotations

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax import xla_cpu

    xla_cpu.configure_program()

import os
import pathlib
import subprocess
import sys
import time

from absl import app, flags, logging

from colorjax import cli, progress

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", [], "Model configs to compare: configs/<m>.py[:variant],...")
flags.DEFINE_bool("all", False, "Every model config in configs/ that has a :cpu variant, "
                                "at that variant.")
flags.DEFINE_string("workdir", None, "Directory of the comparison: a run per model in "
                                     "DIR/<name>, and the tables, grid and plots.")
flags.DEFINE_multi_string("set", [], "field=value: a config override passed to every run "
                                     "as --config.field=value (repeatable).")
flags.DEFINE_bool("eval_only", False, "Evaluate the runs already in DIR/<name>; never train.")
flags.DEFINE_list("exports", [], "Exported models (--mode=export, python -m colorjax.convert) "
                                 "to evaluate as rows beside the runs, on the same images.")
flags.DEFINE_list("splits", [], "Eval splits (default: the runs' own config.eval.split).")
flags.DEFINE_integer("num_images", 8, "Images (columns) in compare_grid.png.")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples of the images per interval "
                                        "(0: no intervals).")
flags.DEFINE_string("inception_weights", None,
                    "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (from its GitHub "
                    "release; sha256-checked): adds FID and IS proper to every row. "
                    "Without it those columns say 'not computed'.")
flags.mark_flags_as_required(["workdir"])

GRAY, TRUTH = "gray (ab = 0)", "truth"
NETS = ("vgg16", "effnet")


def run_name(spec: str) -> str:
    """`configs/unet.py:cpu` -> `unet_cpu`; `configs/unet.py` -> `unet`."""
    path, _, variant = spec.partition(":")
    stem = pathlib.Path(path).stem if path.endswith(".py") else path
    return f"{stem}_{variant}" if variant else stem


def cpu_model_configs() -> list[str]:
    """`configs/<m>.py:cpu` of every model config with a :cpu variant (not the defaults)."""
    from colorjax.configs import CONFIG_DIR, available_configs, load_config

    found = []
    for name in available_configs():
        try:
            load_config(name, "cpu")
        except Exception:  # noqa: BLE001  no :cpu variant (or a broken file): not compared
            continue
        rel = os.path.relpath(CONFIG_DIR / f"{name}.py")
        found.append(f"{rel}:cpu")
    return found


def _last_line(text: str) -> str:
    """The last non-empty line of `text` (of a progress bar's line, what it printed last)."""
    for line in reversed(text.splitlines()):
        line = line.split("\r")[-1].strip() or line.strip()
        if line:
            return cli.one_line(line)[:300]
    return "no output"


def _typed(current, text: str):
    """`text` (a --set value) as the type of the field's `current` value."""
    import ast

    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not True or False")
        return text.lower() == "true"
    if isinstance(current, str):
        return text
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        return type(current)(float(text)) if isinstance(current, float) else int(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def runtime_overrides(sets: list[str]):
    """A `restore_run` prepare_config applying the `--set` fields that are runtime fields
    (data, eval, sampler, ...): what an `--eval_only` comparison evaluates on. The others
    shaped the trained model and are already in each run's saved config."""
    from colorjax import config_fields, run_config

    fields = [s.partition("=")[::2] for s in sets]

    def prepare(config):
        for path, text in fields:
            if run_config._is_runtime(path):
                current = config_fields.get(config, path, None)
                config_fields.set_field(config, path, _typed(current, text))
        return config
    return prepare


# --- training ----------------------------------------------------------------------------


def train(spec: str, run_dir: str, sets: list[str]) -> dict:
    """Train (or resume, or reuse) `spec` in `run_dir` with the CLI in a subprocess; its
    output is appended to `run_dir/train.log`. {"ok", "seconds", "log", "reused"}."""
    os.makedirs(run_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "colorjax.main", f"--config={spec}", f"--workdir={run_dir}",
           *[f"--config.{s}" for s in sets]]
    log_path = os.path.join(run_dir, "train.log")
    with open(log_path, "a") as log:
        log.write(f"=== colorjax.compare {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{' '.join(cmd)}\n")
        log.flush()
        start = log.tell()
        t0 = time.time()
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        seconds = time.time() - t0
    with open(log_path, errors="replace") as f:
        f.seek(start)
        text = f.read()
    return {"ok": rc == 0, "rc": rc, "seconds": seconds, "log": text,
            "reused": "nothing to do:" in text, "resumed": "resumed from step" in text}


def minutes_from_metrics(records: list[dict]) -> float | None:
    """Training minutes from a run's metrics.jsonl timestamps: each session's span from its
    first record (the gray baseline written before step 1) to its last training record."""
    total, first, last = 0.0, None, None
    for r in records:
        if r.get("split") == "eval_gray_baseline":  # a (re)start of training
            if first is not None and last is not None:
                total += max(0.0, last - first)
            first, last = r["time"], None
        elif r.get("split") == "train":
            if first is None:
                first = r["time"]
            last = r["time"]
    if first is not None and last is not None:
        total += max(0.0, last - first)
    return total / 60 if records else None


# --- evaluation --------------------------------------------------------------------------


class Evaluation:
    """Per-image predictions and metrics of restored runs on the same images."""

    def __init__(self, num_images: int, bootstrap: int, inception=None):
        import jax

        self.jax = jax
        self.num_images = num_images
        self.bootstrap = bootstrap
        self._lpips = {}
        self._metric_fns = {}
        self.reference = {}  # split -> {"l", "ab", "source"}: the first run's images
        self.indices = {}  # split -> bootstrap indices
        from colorjax.metrics import distribution, semantic
        self.dist, self.semantic = distribution, semantic
        self.truth_features = {}  # (split, net) -> features
        self.inception = inception  # FID Inception variables, or None: FID/IS not computed
        self.truth_inception = {}  # split -> (pool3 features, IS logits) of the truth

    def _metrics_fn(self, net: str):
        """Jitted per-image metrics with the LPIPS `net` (as the Evaluator builds it)."""
        if net not in self._metric_fns:
            from colorjax import evaluate, metrics
            lp = metrics.LPIPS(net)
            self._lpips[net] = lp

            def fn(l, ab_pred, ab_true, params):
                dist = evaluate.lpips_on_small_images(lp, params)
                return evaluate.image_metrics(l, ab_pred, ab_true, dist)
            self._metric_fns[net] = (self.jax.jit(fn), lp)
        return self._metric_fns[net]

    def predict_split(self, config, objective, state, split):
        """(l, ab_pred, ab_true, per-image metrics) over `split` of the run's eval data."""
        import numpy as np

        from colorjax import data

        jax = self.jax
        it = data.create_eval_iterator(config.data, split=split,
                                       global_batch_size=int(config.eval.batch_size),
                                       num_examples=int(config.eval.num_examples) or None)
        predict = jax.jit(objective.predict)
        metric_fn, lp = self._metrics_fn(config.eval.lpips_net)
        rng = jax.random.fold_in(jax.random.key(config.seed), 0xE7A1)  # the Evaluator's
        ls, preds, trues, per = [], [], [], []
        for i, batch in enumerate(it):
            keep = np.asarray(batch["mask"]) > 0  # padding rows of the last batch
            ab = predict(state, batch["l"], jax.random.fold_in(rng, i))
            m = jax.device_get(metric_fn(batch["l"], ab, batch["ab"], lp.params))
            ls.append(np.asarray(batch["l"])[keep])
            preds.append(np.asarray(jax.device_get(ab))[keep])
            trues.append(np.asarray(batch["ab"])[keep])
            per.append({k: np.asarray(v)[keep] for k, v in m.items()})
        per_image = {k: _finite(np.concatenate([p[k] for p in per])) for k in per[0]}
        return (np.concatenate(ls), np.concatenate(preds), np.concatenate(trues), per_image)

    def set_reference(self, split, config, l, ab_true, source: str):
        """The images every run of `split` must be evaluated on, with the gray row."""
        import numpy as np

        from colorjax import color

        metric_fn, lp = self._metrics_fn(config.eval.lpips_net)
        gray = np.zeros_like(ab_true)
        per = {}
        bs = int(config.eval.batch_size)
        for s in range(0, len(l), bs):
            m = self.jax.device_get(metric_fn(l[s:s + bs], gray[s:s + bs], ab_true[s:s + bs],
                                              lp.params))
            for k, v in m.items():
                per.setdefault(k, []).append(np.asarray(v))
        per = {k: _finite(np.concatenate(v)) for k, v in per.items()}
        from colorjax.compare_report import bootstrap_indices
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
        from colorjax.compare_report import mean_and_interval

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
        from colorjax.compare_report import mean_and_interval

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
            return {"error": _last_line(str(e)) or type(e).__name__}

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
                why = _last_line(str(e)) or type(e).__name__
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
            return {"si_error": _last_line(str(e)) or type(e).__name__}


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
        return None, _last_line(f"{type(e).__name__}: {e}")


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


# --- the command -------------------------------------------------------------------------


def compare(specs: list[str], workdir: str, sets: list[str], eval_only: bool,
            splits: list[str], num_images: int, bootstrap: int, inception=None,
            inception_path: str | None = None, exports: list[str] | None = None) -> int:
    """Train, evaluate and report every model of `specs`; returns the exit status.
    `inception`: FID Inception variables (`models.inception.load_inception`) for FID and
    IS, loaded from `inception_path`; None: those columns say "not computed"."""
    import numpy as np

    from colorjax import checkpoint, compare_report

    os.makedirs(workdir, exist_ok=True)
    names = [run_name(s) for s in specs]
    if len(set(names)) != len(names):
        cli.fail(f"error: --configs names a run twice: {names}")
    ev = Evaluation(num_images, bootstrap, inception)
    results = {}  # split -> {row name -> row}
    grids = {}  # split -> [(label, rgb)]
    truth_images = {}
    model_info = {}
    failed = 0
    ref_config = None  # the first restored run's config: the exports' eval data
    width = len(str(len(specs)))
    # Models done (trained or reused, and evaluated); each model's lines are printed above.
    bar = progress.bar(len(specs), "compare", "model")
    for i, (spec, name) in enumerate(zip(specs, names), 1):
        if i > 1:
            bar.update(1)  # the previous model is done, whichever way its turn ended
        tag = f"[{i:>{width}}/{len(specs)}] {name}"
        run_dir = os.path.join(workdir, name)
        info = {"config": spec, "workdir": run_dir}
        model_info[name] = info
        t0 = time.time()
        if eval_only:
            bar.set_postfix_str(f"{name}: evaluating")
            progress.say(f"{tag}: evaluating {run_dir} (--eval_only: no training) ...")
            trained = None
        else:
            bar.set_postfix_str(f"{name}: training (log: {os.path.join(run_dir, 'train.log')})")
            progress.say(f"{tag}: training ...")
            trained = train(spec, run_dir, sets)
            if not trained["ok"]:
                why = _last_line(trained["log"])
                info.update(status="failed", error=f"training failed: {why}")
                failed += 1
                progress.say(f"{tag}: training failed after {trained['seconds'] / 60:.1f} min: "
                             f"{why} (see {os.path.join(run_dir, 'train.log')})")
                continue
            bar.set_postfix_str(f"{name}: evaluating")
        try:
            config, objective, state, step = checkpoint.restore_run(
                run_dir, prepare_config=runtime_overrides(sets))
            ref_config = ref_config or config  # exports are evaluated on its images
            records = compare_report.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
            if trained is not None and not trained["reused"] and not trained["resumed"]:
                minutes, source = trained["seconds"] / 60, "subprocess"
            else:
                minutes, source = minutes_from_metrics(records), "metrics.jsonl"
            ips = [r["images_per_sec"] for r in records
                   if r.get("split") == "train" and "images_per_sec" in r]
            info.update(status="ok", steps=int(step), train_minutes=minutes,
                        train_minutes_source=source, params=num_params(objective, state),
                        images_per_sec=float(np.mean(ips)) if ips else None,
                        reused=bool(eval_only or (trained and trained["reused"])))
            del records
        except Exception as e:  # noqa: BLE001  a run that cannot be restored is a failed row
            why = _last_line(f"{type(e).__name__}: {e}")
            info.update(status="failed", error=f"evaluation failed: {why}")
            failed += 1
            progress.say(f"{tag}: evaluation failed: {why}")
            continue
        summary, split_errors = [], {}
        for split in (splits or [config.eval.split]):
            results.setdefault(split, {})
            try:
                summary.append(evaluate_split(ev, split, name, config, objective, state, info,
                                              results[split], grids, truth_images))
            except Exception as e:  # noqa: BLE001  a failed evaluation is the model's row
                why = _last_line(f"{type(e).__name__}: {e}")
                split_errors[split] = why
                results[split][name] = {"status": "failed",
                                        "error": f"evaluation failed: {why}"}
                summary.append(f"{split}: evaluation failed: {why}")
        del state
        if len(split_errors) == len(splits or [config.eval.split]):
            info.update(status="failed", error=f"evaluation failed: "
                                               f"{next(iter(split_errors.values()))}")
            failed += 1
            progress.say(f"{tag}: evaluation failed: {'; '.join(summary)}")
            continue
        if split_errors:
            info["split_errors"] = split_errors
        how = ("reused" if info["reused"] else "trained") + \
              (f" {minutes:.2f} min ({source})" if minutes is not None else "")
        params = compare_report.params_text(info["params"])
        progress.say(f"{tag}: {how}, step {step}, {params} params; "
                     f"{'; '.join(summary)} [{time.time() - t0:.0f} s]")
    bar.update(1)  # the last model
    bar.set_postfix_str("")
    bar.close()  # the final bar, once, above the tables
    for path in exports or []:  # after the runs: evaluated on their images
        name = export_row_name(path, names)
        names.append(name)
        model_info[name] = {"config": None, "export": os.path.abspath(path)}
        failed += not evaluate_export(ev, path, name, ref_config, sets, splits, model_info[name],
                                      results, grids, truth_images)

    # Rows of failed models (after gray and the models that have numbers), truth last.
    if not results:
        results = {s: {} for s in (splits or ["(none)"])}
    tables = []
    payload = {"workdir": os.path.abspath(workdir), "configs": specs, "set": sets,
               "eval_only": eval_only, "bootstrap": bootstrap, "interval": "95% percentile",
               "fid": "not computed", "is": "not computed", "models": model_info,
               "splits": {}}
    if inception is not None:
        import hashlib
        with open(inception_path, "rb") as f:  # the file's own digest (the CLI checked it)
            digest = hashlib.sha256(f.read()).hexdigest()
        payload["fid"] = {"weights": os.path.abspath(inception_path), "sha256": digest,
                          "features": "FID Inception-v3 pool3 (2048-d), images resized to "
                                      "299 bilinear", "against": "the split's true images"}
        payload["is"] = {"weights": payload["fid"]["weights"], "splits": 1,
                         "logits": "the 1008-way fc without its bias (as Salimans et al.'s "
                                   "code)", "note": "one split over the eval images: not "
                                                    "comparable with 50k-image, 10-split IS"}
    for split, rows in results.items():
        ordered = {}
        if GRAY in rows:
            ordered[GRAY] = rows[GRAY]
        for name in names:
            if name in rows:
                ordered[name] = rows[name]
            elif model_info[name].get("status") == "failed" or name not in rows:
                ordered[name] = {"status": "failed",
                                 "error": model_info[name].get("error", "not evaluated")}
        if split in ev.reference:
            ordered[TRUTH] = ev.truth_row(split)
        ref = ev.reference.get(split, {})
        tables.append(compare_report.markdown_table(split, ordered, bootstrap,
                                                    ref.get("labels_note") or ""))
        payload["splits"][split] = {"num_images": int(len(ref["l"])) if ref else 0,
                                    "reference_run": ref.get("source"),
                                    "si_labels": ref.get("labels_note"), "rows": ordered}
        if split in grids:
            stem = "compare_grid" if split == next(iter(results)) else f"compare_grid_{split}"
            layout = compare_report.save_labelled_grid(
                grids[split] + [(TRUTH, truth_images[split])],
                os.path.join(workdir, stem + ".png"))
            payload["splits"][split]["grid"] = {"path": stem + ".png", **layout}
    runs = {name: compare_report.read_metrics(os.path.join(workdir, name, "metrics.jsonl"))
            for name in names if model_info[name].get("status") == "ok"}
    plots = compare_report.plot_curves(runs, os.path.join(workdir, "plots")) if runs else []
    payload["plots"] = [os.path.relpath(p, workdir) for p in plots]
    md, js = compare_report.write_outputs(workdir, tables, payload)
    print(open(md).read(), flush=True)
    print(f"wrote {md}, {js}, the grid and {len(plots)} plots in "
          f"{os.path.join(workdir, 'plots')}", flush=True)
    if failed == len(specs) + len(exports or []):
        print(f"every model failed ({failed} of {failed})", file=sys.stderr, flush=True)
        return 1
    return 0


def evaluate_split(ev, split, name, config, objective, state, info, rows, grids,
                   truth_images) -> str:
    """`name`'s row of `split` in `rows` (the gray row too, for the first run that gets
    there) and its grid row; the progress summary. Raises when its images are not those
    of the first run."""
    import numpy as np

    from colorjax import color

    l, ab_pred, ab_true, per_image = ev.predict_split(config, objective, state, split)
    bad = sorted(k for k, v in per_image.items() if not np.all(np.isfinite(v)))
    if bad:  # a failed row, not a score (and not the reference of the split)
        images = int(np.sum((~np.isfinite(np.stack([per_image[k] for k in bad]))).any(axis=0)))
        raise ValueError(f"its metrics are NaN/Inf on {images} of {len(l)} images "
                         f"({', '.join(bad)}): its predictions are not finite")
    if split not in ev.reference:
        gray_row, gray_rgb, truth_rgb = ev.set_reference(split, config, l, ab_true, name)
        rows[GRAY] = gray_row
        grids[split] = [(GRAY, gray_rgb[:ev.num_images])]
        truth_images[split] = truth_rgb[:ev.num_images]
    ref = ev.reference[split]
    if ab_true.shape != ref["ab"].shape or not np.allclose(ab_true, ref["ab"], atol=1e-4):
        raise ValueError(f"its {split} images differ from those of {ref['source']} (the eval "
                         f"data configs differ: {_data_summary(config)})")
    rgb = color.model_outputs_to_rgb(l, ab_pred)
    row = ev.row(split, per_image, rgb)
    row.update({k: info[k] for k in ("steps", "train_minutes", "train_minutes_source",
                                     "params", "images_per_sec")})
    rows[name] = row
    grids[split].append((name, rgb[:ev.num_images]))
    m = row["metrics"]
    return (f"{split}: ciede2000 {m['ciede2000']['mean']:.3g}, lpips {m['lpips']['mean']:.3g}, "
            f"psnr {m['psnr']['mean']:.3g}")


def export_row_name(path: str, taken: list[str]) -> str:
    """`<directory name> (export)`, numbered where that is taken."""
    base = f"{os.path.basename(os.path.normpath(path))} (export)"
    name, k = base, 2
    while name in taken:
        name, k = f"{base} {k}", k + 1
    return name


class _Exported:
    """An export's objective as a restored run's: `predict(variables, l, rng)`."""

    def __init__(self, objective):
        self.objective = objective

    def predict(self, variables, gray_l, rng):
        return self.objective.predict_with(variables, gray_l, rng)

    def inference_variables(self, variables):
        return variables


def evaluate_export(ev, path, name, ref_config, sets, splits, info, results, grids,
                    truth_images) -> bool:
    """`name`'s rows for the export at `path`, on the images of `ref_config` (the first
    run's; None: the export's own config) with the `--set` runtime fields; False (and a
    failed row) when it cannot be read or evaluated."""
    from colorjax.artifact import read_export

    tag = f"[export] {name}"
    try:
        config, metadata, objective, variables = read_export(path)
        config = runtime_overrides(sets)(config)
        if ref_config is not None:  # the runs' images, sizes and eval settings
            config.data, config.eval, config.seed = ref_config.data, ref_config.eval, \
                ref_config.seed
        objective = _Exported(objective)
        info.update(status="ok", steps=metadata.get("step"), train_minutes=None,
                    train_minutes_source=None, params=num_params(objective, variables),
                    images_per_sec=None, reused=True, model=metadata["model"])
    except Exception as e:  # noqa: BLE001  an unreadable export is a failed row
        info.update(status="failed", error=f"export not usable: {_last_line(str(e))}")
        progress.say(f"{tag}: {info['error']}")
        return False
    summary, errors = [], 0
    for split in (splits or [config.eval.split]):
        rows = results.setdefault(split, {})
        try:
            summary.append(evaluate_split(ev, split, name, config, objective, variables, info,
                                          rows, grids, truth_images))
        except Exception as e:  # noqa: BLE001  a failed evaluation is the model's row
            errors += 1
            why = _last_line(f"{type(e).__name__}: {e}")
            rows[name] = {"status": "failed", "error": f"evaluation failed: {why}"}
            summary.append(f"{split}: evaluation failed: {why}")
    if errors == len(splits or [config.eval.split]):
        info.update(status="failed", error=summary[0].split(": ", 1)[1])
    progress.say(f"{tag}: {metadata['model']} at {os.path.abspath(path)}, step "
                 f"{metadata.get('step')}; {'; '.join(summary)}")
    return info["status"] == "ok"


def _data_summary(config) -> str:
    d = config.data
    return (f"data {d.eval_folder or d.eval_name or d.folder or d.name}, image_size "
            f"{d.image_size}, eval.num_examples {config.eval.num_examples}")


def main(argv):
    if len(argv) > 1:
        cli.fail(f"error: unexpected arguments: {argv[1:]}; see --helpshort")
    logging.set_verbosity(logging.WARNING)
    if FLAGS.all and FLAGS.configs:
        cli.fail("error: give --configs or --all, not both")
    specs = cpu_model_configs() if FLAGS.all else list(FLAGS.configs)
    if not specs and not FLAGS.exports:
        cli.fail("error: no models to compare: give --configs=configs/<m>.py[:variant],... "
                 "or --all, and/or --exports=DIR,...")
    for s in FLAGS.set:
        if "=" not in s or not s.split("=", 1)[0].strip():
            cli.fail(f"error: --set={s!r} is not field=value (e.g. --set=data.image_size=32)")
    if FLAGS.num_images < 1 or FLAGS.bootstrap < 0:
        cli.fail("error: --num_images must be >= 1 and --bootstrap >= 0")
    inception = None
    if FLAGS.inception_weights:  # loaded (and hash-checked) once, before any training
        from colorjax.models.inception import InceptionWeightsError, load_inception
        try:
            inception = load_inception(FLAGS.inception_weights)
        except InceptionWeightsError as e:
            cli.fail(f"error: --inception_weights: {e}")
    sys.exit(compare(specs, FLAGS.workdir, list(FLAGS.set), FLAGS.eval_only,
                     list(FLAGS.splits), FLAGS.num_images, FLAGS.bootstrap, inception,
                     FLAGS.inception_weights, list(FLAGS.exports)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
