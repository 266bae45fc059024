"""Checks of single config fields, keyed by the dotted field name.

    choice(config, "model.norm", NORMS)
    integer(config, "diffusion.timesteps", low=2)
    number(config, "sampler.eta", low=0.0)
    number(config, "model.dropout", low=0.0, high=1.0, high_open=True)

Each reads `config.<field>` (config_fields), returns its value and raises one
`ConfigError`, `config.<field>: <value> is not allowed; allowed: <...>`, when it is wrong.
A field that is absent is an error, unless the check is given a `default=`, which is then
returned unchecked (`default=None`: absent means "not set").
"""

from __future__ import annotations

import math
import numbers

from colorjax.config import fields as config_fields

REQUIRED = config_fields.MISSING  # the `default` of a field that must be present


class ConfigError(ValueError):
    """A wrong config field, as one line: `config.<field>: <what is wrong>; allowed: <...>`."""

    def __init__(self, field: str, problem: str, allowed=None):
        self.field = field
        if allowed is not None and not isinstance(allowed, str):  # values, or a dict's keys
            allowed = allowed_text(allowed)
        self.problem = " ".join(str(problem).split())  # one line, whatever it was given
        self.allowed = " ".join(allowed.split()) if allowed else None
        suffix = f"; allowed: {self.allowed}" if self.allowed else ""
        super().__init__(f"{field}: {self.problem}{suffix}" if field
                         else f"{self.problem}{suffix}")


def allowed_text(values) -> str:
    """`['a', 'b']`: allowed values (or a dict's keys), sorted."""
    return "[" + ", ".join(repr(a) for a in sorted(values, key=str)) + "]"


def fail(field: str, value, allowed, note: str = "") -> ConfigError:
    """The ConfigError (to raise) of `config.<field>` holding `value`: `allowed` is a text
    or the allowed values, `note` is appended to it."""
    text = allowed if isinstance(allowed, str) else allowed_text(allowed)
    return ConfigError(f"config.{field}", f"{value!r} is not allowed",
                       f"{text} {note}" if note else text)


def _absent(config, field: str, default):
    """(True, default) where `config.<field>` is absent and a default is given, (False,
    value) where it is present; an error where it is absent without a default."""
    value = config_fields.get(config, field)
    if value is not config_fields.MISSING:
        return False, value
    if default is REQUIRED:
        raise ConfigError(f"config.{field}", "is missing",
                          "a value (start from one of the files in configs/)")
    return True, default


def get(config, field: str, default=REQUIRED):
    """`config.<field>`; `default` where it is absent, an error without one."""
    return _absent(config, field, default)[1]


def choice(config, field: str, allowed, *, default=REQUIRED, note: str = ""):
    """`config.<field>`, which must be one of `allowed` (values, or a dict's keys)."""
    absent, value = _absent(config, field, default)
    if not absent and value not in allowed:
        raise fail(field, value, allowed, note)
    return value


def interval(low=None, high=None, low_open: bool = False, high_open: bool = False) -> str:
    """`[low, high)` and the like; a missing bound is infinite."""
    lo = "(-∞" if low is None else ("(" if low_open else "[") + str(low)
    hi = "∞)" if high is None else str(high) + (")" if high_open else "]")
    return f"{lo}, {hi}"


# JAX computes in int32 unless told otherwise: steps, counts and sizes past this overflow
# (and jax.random.key keeps only the low 32 bits of a seed), so an integer check without
# an upper bound of its own stops here.
INT_MAX = 2**31 - 1


def _inside(value, low, high, low_open, high_open) -> bool:
    return ((low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high)))


def _ranged(field, value, kind, low, high, low_open, high_open, note):
    is_kind = (isinstance(value, numbers.Integral) if kind == "integers"
               else isinstance(value, numbers.Real))
    if kind == "integers" and is_kind and not isinstance(value, bool):
        if high is None and value > INT_MAX:  # named in the message: the bound that applies
            high, high_open = INT_MAX, False
        if low is None and value < -INT_MAX - 1:
            low, low_open = -INT_MAX - 1, False
    # NaN compares false with every bound, and no field means anything by ±inf.
    finite = not is_kind or isinstance(value, bool) or math.isfinite(value)
    if isinstance(value, bool) or not is_kind or not finite or not _inside(
            value, low, high, low_open, high_open):
        if low is None and high is None:
            allowed = kind if finite else "finite " + kind
        else:
            allowed = interval(low, high, low_open, high_open)
            if kind == "integers":
                allowed += " (integers)"
        raise fail(field, value, allowed, note)
    return value


def integer(config, field: str, low=None, high=None, *, low_open: bool = False,
            high_open: bool = False, default=REQUIRED, note: str = ""):
    """`config.<field>`, an integer (not a bool) inside the bounds (closed unless `*_open`);
    without a `high`, at most INT_MAX."""
    absent, value = _absent(config, field, default)
    if absent:
        return value
    return _ranged(field, value, "integers", low, high, low_open, high_open, note)


def number(config, field: str, low=None, high=None, *, low_open: bool = False,
           high_open: bool = False, default=REQUIRED, note: str = ""):
    """`config.<field>`, a finite real number (not a bool, NaN or ±inf) inside the bounds."""
    absent, value = _absent(config, field, default)
    if absent:
        return value
    return _ranged(field, value, "numbers", low, high, low_open, high_open, note)


def sequence(config, field: str, kind: str = "numbers", low=None, high=None, *,
             low_open: bool = False, high_open: bool = False, length=None,
             min_length: int = 0, default=REQUIRED, note: str = ""):
    """`config.<field>` as a tuple of `kind` ("numbers" or "integers"), `length` long (or
    at least `min_length`), each inside the bounds; an element is named by its index."""
    absent, value = _absent(config, field, default)
    if absent:
        return value
    bounds = "" if low is None and high is None else " in " + interval(low, high, low_open,
                                                                       high_open)
    count = f"{length}" if length is not None else (
        f"at least {min_length}" if min_length else "any number of")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or (
            len(value) != length if length is not None else len(value) < min_length):
        raise fail(field, value, f"{count} {kind}{bounds}", note)
    for i, item in enumerate(value):
        _ranged(f"{field}[{i}]", item, kind, low, high, low_open, high_open, note)
    return tuple(value)


def boolean(config, field: str, *, default=REQUIRED, note: str = ""):
    """`config.<field>`, True or False."""
    absent, value = _absent(config, field, default)
    if not absent and not isinstance(value, bool):
        raise fail(field, value, "True or False", note)
    return value


def string(config, field: str, *, default=REQUIRED, note: str = ""):
    """`config.<field>`, a string."""
    absent, value = _absent(config, field, default)
    if not absent and not isinstance(value, str):
        raise fail(field, value, "strings", note)
    return value
