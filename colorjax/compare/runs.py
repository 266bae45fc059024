"""The runs a comparison trains: their names, the `--set` overrides, and training one by
the real CLI in a subprocess (`python -m colorjax.compare`'s docstring says how)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

from colorjax.platform import cli


def run_name(spec: str) -> str:
    """`configs/unet.py:cpu` -> `unet_cpu`; `configs/unet.py` -> `unet`."""
    path, _, variant = spec.partition(":")
    stem = pathlib.Path(path).stem if path.endswith(".py") else path
    return f"{stem}_{variant}" if variant else stem


def cpu_model_configs() -> list[str]:
    """`configs/<m>.py:cpu` of every model config with a :cpu variant (not the defaults)."""
    from colorjax.presets import CONFIG_DIR, available_configs, load_config

    found = []
    for name in available_configs():
        try:
            load_config(name, "cpu")
        except Exception:  # noqa: BLE001  no :cpu variant (or a broken file): not compared
            continue
        rel = os.path.relpath(CONFIG_DIR / f"{name}.py")
        found.append(f"{rel}:cpu")
    return found


def last_line(text: str) -> str:
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
    from colorjax.config import fields as config_fields
    from colorjax.training import run_config

    fields = [s.partition("=")[::2] for s in sets]

    def prepare(config):
        for path, text in fields:
            if run_config.is_runtime(path, config):
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
