"""The comparison itself: train (or reuse) every run, evaluate runs and exports on the same
images, write `compare.md`, `compare.json`, the grid and the plots."""

from __future__ import annotations

import os
import sys
import time

from colorjax.platform import cli
from colorjax.platform import progress
from colorjax.compare.evaluation import GRAY, TRUTH, Evaluation, num_params
from colorjax.compare.runs import (last_line, minutes_from_metrics, run_name,
                                   runtime_overrides, train)


def compare(specs: list[str], workdir: str, sets: list[str], eval_only: bool,
            splits: list[str], num_images: int, bootstrap: int, inception=None,
            inception_path: str | None = None, exports: list[str] | None = None) -> int:
    """Train, evaluate and report every model of `specs`; returns the exit status.
    `inception`: FID Inception variables (`models.inception.load_inception`) for FID and
    IS, loaded from `inception_path`; None: those columns say "not computed"."""
    import numpy as np

    from colorjax.training import checkpoint
    from colorjax.compare import report as compare_report

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
                why = last_line(trained["log"])
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
            why = last_line(f"{type(e).__name__}: {e}")
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
                why = last_line(f"{type(e).__name__}: {e}")
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
                         f"data configs differ: {data_summary(config)})")
    rgb = color.model_outputs_to_rgb(l, ab_pred)
    row = ev.row(split, per_image, rgb)
    row.update({k: info[k] for k in ("steps", "train_minutes", "train_minutes_source",
                                     "params", "images_per_sec")})
    row["infer_seconds"] = ev.seconds_per_image
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

    def predict(self, variables, gray_l, rng, **hints):
        return self.objective.predict_with(variables, gray_l, rng, **hints)

    def inference_variables(self, variables):
        return variables


def evaluate_export(ev, path, name, ref_config, sets, splits, info, results, grids,
                    truth_images) -> bool:
    """`name`'s rows for the export at `path`, on the images of `ref_config` (the first
    run's; None: the export's own config) with the `--set` runtime fields; False (and a
    failed row) when it cannot be read or evaluated."""
    from colorjax.inference.artifact import read_export

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
        info.update(status="failed", error=f"export not usable: {last_line(str(e))}")
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
            why = last_line(f"{type(e).__name__}: {e}")
            rows[name] = {"status": "failed", "error": f"evaluation failed: {why}"}
            summary.append(f"{split}: evaluation failed: {why}")
    if errors == len(splits or [config.eval.split]):
        info.update(status="failed", error=summary[0].split(": ", 1)[1])
    progress.say(f"{tag}: {metadata['model']} at {os.path.abspath(path)}, step "
                 f"{metadata.get('step')}; {'; '.join(summary)}")
    return info["status"] == "ok"


def data_summary(config) -> str:
    d = config.data
    return (f"data {d.eval_folder or d.eval_name or d.folder or d.name}, image_size "
            f"{d.image_size}, eval.num_examples {config.eval.num_examples}")
