"""Property-based: every numeric and enumerated field of every config in configs/ (each
variant), given a value it cannot take, is one `ConfigError` line naming that field, raised
by the validation `python -m colorjax.main` runs before anything compiles.

The fields are found by walking each config (`config_fields.paths`), not listed here;
hypothesis draws the bad values (NaN, ±inf, negative, zero where zero means nothing, past
int32, strings that are no choice) and, separately, any value of a field's type, which
must be accepted or refused in one line: never another exception, never a hang. The
validation runs in this process (it is cheap); a few cases go through the real CLI in
subprocesses to show that what this file checks is what a user sees.
"""

import contextlib
import math
import os
import signal
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorjax.platform import cli
from colorjax.config import fields as config_fields
from colorjax.training import warm_start
from colorjax.training.validation import ConfigError, validate_config
from colorjax.presets import available_configs, load_config, variants
from conftest import REPO

CONFIGS = [(name, variant) for name in available_configs() for variant in variants(name)]

# Strings that are free text: any value is some user's (W&B names), or names something
# only found when the data is read (a TFDS feature key, a data directory to create).
FREE_TEXT = {"data.data_dir", "data.image_key", "wandb.entity", "wandb.project"}
# Numeric fields where 0 has no meaning (a count of things that must exist, a size, a
# rate); where 0 means "off", "all" or "none" (num_epochs, warmup, loss weights,
# eval.num_examples, ...) it is allowed. Each must be a field of some config (checked).
ZERO_IS_AN_ERROR = {
    "batch_size", "eval.batch_size", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints", "eval.num_images", "data.image_size", "data.min_size",
    "data.worker_buffer", "optimizer.learning_rate", "disc_optimizer.learning_rate",
    "diffusion.timesteps", "sampler.steps", "adversarial.n_critic",
    "adversarial.disc_features", "adversarial.disc_layers", "model.width",
    "model.latent_dim", "model.backbone_width", "model.fusion_width",
    "classification.temperature", "loss_terms.disc_features", "loss_terms.disc_layers",
}
HUGE_INT = 2**32  # past int32, and past every seed jax.random.key tells apart


def _kind(value) -> str | None:
    if isinstance(value, bool):
        return None  # True/False only: the flag parser refuses anything else
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in value):
        return "ints"
    if isinstance(value, tuple) and value and all(isinstance(v, float) for v in value):
        return "floats"
    return None


def _fields(config) -> dict[str, tuple[str, object]]:
    """field -> (kind, the config's value) of each numeric, string or numeric-tuple field."""
    out = {}
    for path in config_fields.paths(config):
        value = config_fields.get(config, path)
        if not config_fields.is_group(value) and (kind := _kind(value)) is not None:
            if kind != "str" or path not in FREE_TEXT:
                out[path] = (kind, value)
    return out


FIELDS = {spec: _fields(load_config(*spec)) for spec in CONFIGS}
ALL_FIELDS = sorted({f for fields in FIELDS.values() for f in fields})
HOLDERS = {f: [spec for spec in CONFIGS if f in FIELDS[spec]] for f in ALL_FIELDS}


def test_the_configs_and_fields_are_found():
    """The walk finds every config file's variants and the fields the lists above name."""
    assert len(CONFIGS) > len(available_configs()) >= 10
    assert ("unet", "cpu") in CONFIGS and ("unetddim", "cpu64") in CONFIGS
    assert {"batch_size", "ema_decay", "optimizer.learning_rate", "model.norm",
            "data.mixture", "model.features"} <= set(ALL_FIELDS)
    assert ZERO_IS_AN_ERROR <= set(ALL_FIELDS), ZERO_IS_AN_ERROR - set(ALL_FIELDS)
    for spec in CONFIGS:  # as shipped, every config is valid
        validate_config(load_config(*spec))


# --- the values ---------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def bad_values(field: str, kind: str, value) -> st.SearchStrategy:
    """Values `field` (of `kind`, `value` in the config) must refuse. Below min(0, value):
    a field whose value is negative holds a sentinel (eval.step=-1) and nothing lower."""
    low = min(0, value) if kind in ("int", "float") else 0
    if kind == "int":
        bad = st.integers(max_value=low - 1) | st.integers(HUGE_INT, 2**70)
        return bad | st.just(0) if field in ZERO_IS_AN_ERROR else bad
    if kind == "float":
        bad = (st.sampled_from([math.nan, math.inf, -math.inf])
               | st.floats(max_value=float(low), exclude_max=True, allow_infinity=False))
        return bad | st.just(0.0) if field in ZERO_IS_AN_ERROR else bad
    if kind == "str":  # never one of the choices, nor a folder or dataset that exists
        return _text.map(lambda t: "bogus-" + t)
    item = (st.integers(max_value=-1) | st.integers(HUGE_INT, 2**70) if kind == "ints" else
            st.sampled_from([math.nan, math.inf, -math.inf])
            | st.floats(max_value=0.0, exclude_max=True, allow_infinity=False))
    return st.tuples(st.integers(0, len(value) - 1), item).map(
        lambda ix: value[:ix[0]] + (ix[1],) + value[ix[0] + 1:])


def any_value(kind: str, value) -> st.SearchStrategy:
    """Any value of the field's type, good or bad."""
    if kind == "int":
        return st.integers(-2**40, 2**40) | st.integers(-8, 64)
    if kind == "float":
        return st.floats() | st.floats(-2.0, 2.0)
    if kind == "str":
        return _text | st.sampled_from(["", "none", "train", "validation", "mse", "alex"])
    item = st.integers(-4, 64) if kind == "ints" else st.floats()
    return st.lists(item, min_size=0, max_size=len(value) + 1).map(tuple)


# --- the check ----------------------------------------------------------------------------


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """A validation that takes longer than this is a failure (a bound it does not check)."""
    def hang(*_):
        raise _Hang(f"validation took over {seconds} s")
    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def validate_with(spec, field, value) -> str | None:
    """The one line validation says about config `spec` with `field` = `value` (as
    `--config.<field>=<value>` sets it), or None when it accepts it: the checks
    `train.train_and_evaluate` runs before it builds anything (the config, then the export
    `config.init_from` names). Any other exception than ConfigError fails the test: it
    would be a traceback on the command line."""
    config = load_config(*spec)
    config_fields.set_field(config, field, value)
    try:
        with _time_limit(10.0):
            validate_config(config)
            warm_start.check(config)
    except ConfigError as e:
        return cli.one_line(str(e))
    return None


def _names(line: str, field: str) -> bool:
    return line.startswith(f"config.{field}:") or line.startswith(f"config.{field}[")


def checked(examples: int) -> settings:
    """Bounded and the same on every run (derandomized, no example database)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("field", ALL_FIELDS)
@checked(8)
@given(data=st.data())
def test_every_field_refuses_its_bad_values_in_one_line_naming_it(field, data):
    """Per field (so that every field is drawn): a config holding it, a bad value."""
    spec = data.draw(st.sampled_from(HOLDERS[field]), label="config")
    kind, value = FIELDS[spec][field]
    bad = data.draw(bad_values(field, kind, value), label="value")
    line = validate_with(spec, field, bad)
    assert line is not None, f"{spec}: config.{field}={bad!r} was accepted"
    assert _names(line, field), f"{spec}: config.{field}={bad!r}: {line}"


@pytest.mark.parametrize("spec", CONFIGS, ids=[f"{n}:{v}" for n, v in CONFIGS])
@checked(12)
@given(data=st.data())
def test_every_config_refuses_bad_values_of_its_fields(spec, data):
    """Per config (so that every config is drawn): any of its fields, a bad value."""
    field = data.draw(st.sampled_from(sorted(FIELDS[spec])), label="field")
    kind, value = FIELDS[spec][field]
    bad = data.draw(bad_values(field, kind, value), label="value")
    line = validate_with(spec, field, bad)
    assert line is not None, f"{spec}: config.{field}={bad!r} was accepted"
    assert _names(line, field), f"{spec}: config.{field}={bad!r}: {line}"


@pytest.mark.parametrize("spec", CONFIGS, ids=[f"{n}:{v}" for n, v in CONFIGS])
@checked(15)
@given(data=st.data())
def test_any_value_is_accepted_or_refused_in_one_line(spec, data):
    """Whatever a field holds, validation returns or raises one ConfigError line about
    some field: never another exception, never a hang."""
    field = data.draw(st.sampled_from(sorted(FIELDS[spec])), label="field")
    kind, value = FIELDS[spec][field]
    line = validate_with(spec, field, data.draw(any_value(kind, value), label="value"))
    assert line is None or line.startswith("config."), line


# --- the same through the command line ----------------------------------------------------

# (config, override, the field named): a float, an integer and a choice that validation
# refuses, and text for an integer, which the flag parser refuses before it.
CLI_CASES = [
    ("configs/unet.py:cpu", "ema_decay=nan", "ema_decay"),
    ("configs/unetddim.py:cpu64", "seed=4294967296", "seed"),
    ("configs/unetvae.py:cpu", "vae.sample_mode=bogus", "vae.sample_mode"),
    ("configs/unetgan.py:cpu", "eval.batch_size=nan", "eval.batch_size"),
]


@pytest.mark.slow
def test_the_command_line_says_what_validation_says(tmp_path):
    """The real CLI (run concurrently, a few cases): exit 2, one stderr line naming the
    field, no traceback, no run directory; the line is validation's where it gets there."""
    env = {k: v for k, v in os.environ.items() if k != "COLORJAX_DEBUG"}
    runs = []
    for i, (config, override, _) in enumerate(CLI_CASES):
        workdir = tmp_path / f"run{i}"
        runs.append((workdir, subprocess.Popen(
            [sys.executable, "-m", "colorjax.main", f"--config={config}",
             f"--workdir={workdir}", f"--config.{override}"],
            cwd=REPO, env={**env, "JAX_LOG_COMPILES": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)))
    for (config, override, field), (workdir, proc) in zip(CLI_CASES, runs):
        _, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, err[-3000:]
        assert "Traceback" not in err and not workdir.exists()
        assert lines[0].startswith(f"config error: config.{field}: "), lines[0]
        name, _, variant = config.removeprefix("configs/").partition(":")
        spec = (name.removesuffix(".py"), variant)
        key, _, text = override.partition("=")
        try:
            value = type(config_fields.get(load_config(*spec), key))(text)
        except ValueError:
            continue  # text that is no value of the field's type: the flag parser's line
        assert lines[0] == f"config error: {validate_with(spec, key, value)}"
