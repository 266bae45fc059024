"""colorjax.config.checks: one check per field, named by its dotted path, one error form; and
validate_config, which checks every config without building an objective."""

import ml_collections as mlc
import pytest

from colorjax.config import checks
from colorjax.training import validation as config_checks
from colorjax.presets import available_configs, load_config
from colorjax.diffusion import ddim_timesteps, make_schedule
from colorjax.models.discriminators import build_discriminator
from colorjax.models.generators import build_generator


def cfg(**fields):
    """A plain dict (no ConfigDict type safety: any value can be set)."""
    c = {"model": {"norm": "batch", "features": (8, 16)},
         "sampler": {"eta": 0.0, "steps": 4}, "diffusion": {"timesteps": 10}}
    for path, value in fields.items():
        group, key = path.split("__")
        c[group][key] = value
    return c


def test_config_error_is_the_one_class_and_a_value_error():
    assert config_checks.ConfigError is checks.ConfigError
    assert issubclass(checks.ConfigError, ValueError)


def test_config_error_is_structured_and_one_line():
    e = checks.ConfigError("config.model.name", "'x'\n  is not allowed", ["b", "a"])
    assert (e.field, e.problem, e.allowed) == ("config.model.name", "'x' is not allowed",
                                               "['a', 'b']")
    assert str(e) == "config.model.name: 'x' is not allowed; allowed: ['a', 'b']"


@pytest.mark.parametrize("build, field", [
    (lambda: build_generator("nope", (8,), "batch"), "config.model.generator"),
    (lambda: build_discriminator("nope", 8, 2, "batch"), "config.adversarial.discriminator"),
    (lambda: make_schedule("nope", 10), "config.diffusion.schedule"),
    (lambda: ddim_timesteps(10, 11), "config.sampler.steps"),
])
def test_the_networks_raise_config_errors_that_name_their_field(build, field):
    """What the networks and schedules refuse is a ConfigError carrying its field (never a
    ValueError whose text a caller would have to parse)."""
    with pytest.raises(checks.ConfigError) as e:
        build()
    assert e.value.field == field and e.value.allowed


def test_choice_returns_the_value_and_names_the_field_and_the_allowed_values():
    assert checks.choice(cfg(), "model.norm", ("batch", "group")) == "batch"
    with pytest.raises(checks.ConfigError) as e:
        checks.choice(cfg(model__norm="layer"), "model.norm", ("none", "batch", "group"))
    assert str(e.value) == ("config.model.norm: 'layer' is not allowed; "
                            "allowed: ['batch', 'group', 'none']")
    assert e.value.field == "config.model.norm"
    with pytest.raises(checks.ConfigError, match=r"allowed: \['a', 'b'\] \(when x\)$"):
        checks.choice(cfg(), "model.norm", {"a": 1, "b": 2}, note="(when x)")


@pytest.mark.parametrize("value,kwargs,allowed", [
    (1, dict(low=2), "[2, ∞) (integers)"),
    (10, dict(low=1, high=10, high_open=True), "[1, 10) (integers)"),
    (11, dict(low=1, high=10), "[1, 10] (integers)"),
    (0, dict(low=0, low_open=True), "(0, ∞) (integers)"),
    (2.0, dict(low=1), "[1, ∞) (integers)"),  # a float is not an integer
    (True, dict(), "integers"),  # nor is a bool
    ("3", dict(high=5), "(-∞, 5] (integers)"),
])
def test_integer_bounds_and_types(value, kwargs, allowed):
    c = cfg(diffusion__timesteps=value)
    with pytest.raises(checks.ConfigError) as e:
        checks.integer(c, "diffusion.timesteps", **kwargs)
    assert str(e.value) == f"config.diffusion.timesteps: {value!r} is not allowed; allowed: {allowed}"


def test_integer_and_number_accept_the_bounds_they_include():
    assert checks.integer(cfg(diffusion__timesteps=2), "diffusion.timesteps", low=2) == 2
    assert checks.integer(cfg(diffusion__timesteps=9), "diffusion.timesteps", 2, 9) == 9
    assert checks.number(cfg(), "sampler.eta", low=0.0) == 0.0
    assert checks.number(cfg(sampler__eta=1), "sampler.eta", 0.0, 1.0) == 1


@pytest.mark.parametrize("value,kwargs,allowed", [
    (-0.5, dict(low=0.0), "[0.0, ∞)"),
    (0.0, dict(low=0, low_open=True), "(0, ∞)"),
    (1.0, dict(low=0.0, high=1.0, high_open=True), "[0.0, 1.0)"),
    (float("nan"), dict(low=0.0), "[0.0, ∞)"),
    ("fast", dict(), "numbers"),
    (False, dict(), "numbers"),
])
def test_number_bounds_and_types(value, kwargs, allowed):
    with pytest.raises(checks.ConfigError) as e:
        checks.number(cfg(sampler__eta=value), "sampler.eta", **kwargs)
    assert str(e.value) == f"config.sampler.eta: {value!r} is not allowed; allowed: {allowed}"


@pytest.mark.parametrize("value,kwargs,allowed", [
    (float("inf"), dict(low=0, low_open=True), "(0, ∞)"),  # optimizer.learning_rate=inf
    (float("-inf"), dict(high=1.0), "(-∞, 1.0]"),
    (float("nan"), dict(), "finite numbers"),  # no bounds: NaN compares false with none
    (float("inf"), dict(), "finite numbers"),
])
def test_a_number_is_finite(value, kwargs, allowed):
    with pytest.raises(checks.ConfigError) as e:
        checks.number(cfg(sampler__eta=value), "sampler.eta", **kwargs)
    assert str(e.value) == f"config.sampler.eta: {value!r} is not allowed; allowed: {allowed}"


@pytest.mark.parametrize("value,kwargs,allowed", [
    (2**31, dict(low=1), "[1, 2147483647] (integers)"),  # past int32
    (-2**31 - 1, dict(), "[-2147483648, ∞) (integers)"),
    (2**32, dict(low=0, high=2**32, high_open=True), "[0, 4294967296) (integers)"),
])
def test_an_integer_fits_int32_unless_its_bounds_say_otherwise(value, kwargs, allowed):
    with pytest.raises(checks.ConfigError) as e:
        checks.integer(cfg(diffusion__timesteps=value), "diffusion.timesteps", **kwargs)
    assert str(e.value).endswith(f"; allowed: {allowed}")
    assert checks.integer(cfg(diffusion__timesteps=2**31 - 1), "diffusion.timesteps") == 2**31 - 1
    big = dict(low=0, high=2**32, high_open=True)  # a seed: its own bound wins
    assert checks.integer(cfg(diffusion__timesteps=2**31), "diffusion.timesteps", **big) == 2**31


def test_an_absent_field_is_an_error_unless_it_has_a_default():
    c = cfg()
    with pytest.raises(checks.ConfigError, match=r"^config.sampler.temperature: is missing"):
        checks.number(c, "sampler.temperature", low=0.0)
    with pytest.raises(checks.ConfigError, match=r"^config.vae: is missing"):
        checks.get(c, "vae")
    # The default is returned as it is, unchecked: None means "not set".
    assert checks.number(c, "sampler.temperature", low=0.0, default=1.0) == 1.0
    assert checks.choice(c, "model.backbone", ("none",), default=None) is None
    assert checks.integer(c, "no.such.group", low=5, default=0) == 0
    assert checks.get(c, "model.norm", default="x") == "batch"


def test_sequence_length_and_elements_by_index():
    c = cfg()
    assert checks.sequence(c, "model.features", "integers", low=1, min_length=1) == (8, 16)
    with pytest.raises(checks.ConfigError, match=r"^config.model.features: \(8, 16\) is not "
                                                 r"allowed; allowed: 5 numbers in \[0, ∞\)$"):
        checks.sequence(c, "model.features", low=0, length=5)
    c["model"]["features"] = ()
    with pytest.raises(checks.ConfigError, match=r"allowed: at least 1 integers"):
        checks.sequence(c, "model.features", "integers", min_length=1)
    c["model"]["features"] = (8, 0)
    with pytest.raises(checks.ConfigError, match=r"^config.model.features\[1\]: 0 is not "
                                                 r"allowed; allowed: \[1, ∞\) \(integers\)$"):
        checks.sequence(c, "model.features", "integers", low=1)


def test_boolean_and_string():
    c = mlc.ConfigDict({"data": {"hflip": 1, "name": 3}})
    with pytest.raises(checks.ConfigError, match=r"^config.data.hflip: 1 .*allowed: True or False$"):
        checks.boolean(c, "data.hflip")
    with pytest.raises(checks.ConfigError, match=r"^config.data.name: 3 .*allowed: strings$"):
        checks.string(c, "data.name")


def test_validate_config_never_builds_an_objective(monkeypatch):
    import importlib

    import colorjax.objectives
    from colorjax.config import registry

    def refuse(config):
        raise AssertionError("validate_config built an objective")

    monkeypatch.setattr(colorjax.objectives, "make_objective", refuse)
    assert not hasattr(config_checks, "make_objective")
    for name in sorted({s.module for s in registry.builtin().values()}):
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "OBJECTIVE", refuse)
    for name in available_configs():
        for variant in ("", "cpu"):
            config_checks.validate_config(load_config(name, variant))
