"""Model names: `config.model.name` -> its training family, network and objective module.

No table here: each objective module declares the names it trains (`MODELS = {name:
ModelSpec(...)}`) beside its `OBJECTIVE`, `validate` and `downsample_factor`. colorjax's own
are the modules of `colorjax.objectives`, found on first use; a family of your own is any
importable module that declares the same, named by `config.model.objective` (its dotted
path; "" for colorjax's), so adding one edits nothing in colorjax.

The bottom layer: it imports the objective modules only by name, when a name is looked up.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import types

from colorjax.config.checks import ConfigError

BUILTIN = "colorjax.objectives"  # the package whose modules are colorjax's own families


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model name means.

    family: the training family's name (`Objective.family`: metadata, tables, messages).
    network: the network the family builds for this name: the regression network, the
        GAN generator used when `config.model.generator` is not set, the VAE decoder, the
        diffusion UNet.
    sampler: the sampler used when `config.sampler.name` is not set (diffusion only).
    module: the objective module that declares it (filled in by the registry).
    """

    family: str
    network: str
    sampler: str | None = None
    module: str = ""


@functools.cache
def declared(module: str) -> types.MappingProxyType:
    """{name: ModelSpec} that the objective module `module` declares in its `MODELS`."""
    try:
        found = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError("config.model.objective", f"{module!r} cannot be imported ({e})",
                          "an importable module defining MODELS, OBJECTIVE, validate and "
                          "downsample_factor; \"\" for colorjax's own") from e
    models = vars(found).get("MODELS", {})
    return types.MappingProxyType(
        {name: dataclasses.replace(s, module=module) for name, s in models.items()})


@functools.cache
def builtin() -> types.MappingProxyType:
    """{name: ModelSpec} of colorjax's own families (every module of colorjax.objectives)."""
    package = importlib.import_module(BUILTIN)
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        found.update(declared(f"{BUILTIN}.{info.name}"))
    return types.MappingProxyType(found)


def _name_and_module(model) -> tuple[str, str]:
    """(name, objective module) of a `config.model` (or a bare name: colorjax's own)."""
    if isinstance(model, str):
        return model, ""
    return str(model["name"]), str(model.get("objective", "") or "")


def spec(model) -> ModelSpec:
    """The ModelSpec of `config.model` (or a model name); a ConfigError listing the names
    its module declares otherwise."""
    name, module = _name_and_module(model)
    models = declared(module) if module else builtin()
    if name not in models:
        raise ConfigError("config.model.name", f"{name!r} is not allowed" +
                          (f" (config.model.objective={module!r} declares "
                           f"{sorted(models)})" if module else ""), dict(models))
    return models[name]


def names(family: str | None = None) -> tuple[str, ...]:
    """colorjax's own model names (of one family), sorted."""
    return tuple(sorted(n for n, s in builtin().items() if family in (None, s.family)))


def family_module(model) -> types.ModuleType:
    """The objective module of `config.model` (or a model name), imported. It defines
    `validate(config)`, `downsample_factor(config)` and `OBJECTIVE`, its Objective class
    (or a function of the config that builds one)."""
    return importlib.import_module(spec(model).module)
