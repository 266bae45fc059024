"""`config.init_from=EXPORT`: a training run that starts from an export's weights instead of
a random initialisation (fine-tuning a converted published model, `colorjax.convert`, or any
colorjax export, on one's own photos).

What is taken from the export: the network's parameters (and the EMA copy starts from them)
and its other collections (BatchNorm statistics, a classification model's bins). The
optimizer starts afresh; the data statistics a family counts before step 1 (the
classification family's colour prior) are counted from this run's data, keeping the
export's output layer (`ClassificationObjective.keep_output_layer`). A run that resumes from
its own checkpoint ignores `init_from`: the checkpoint already holds the weights.

Families whose training state holds more networks than their export (a GAN's
discriminator, a VAE's encoder) cannot start from an export this way: one ConfigError says
so, as for an export of another model or shape. A regression model's GAN term
(`config.loss_terms`) keeps its discriminator beside the network's fields: it starts
afresh, as DDColor's training does from `pretrain_network_g` alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from colorjax.config import checks
from colorjax.config.checks import ConfigError

FIELD = "config.init_from"


def export_path(config) -> str:
    """`config.init_from` ('' = start from a random initialisation)."""
    return checks.string(config, "init_from", default="") or ""


def check(config) -> dict | None:
    """The metadata of the export `config.init_from` names (None without one), before
    anything is built: ConfigError for a path that is not a (sound) export, or an export of
    another model."""
    path = export_path(config)
    if not path:
        return None
    from colorjax.inference.artifact import ExportError, read_metadata

    try:
        metadata = read_metadata(path)
    except ExportError as e:
        raise ConfigError(FIELD, str(e), "an export directory (python -m colorjax.main "
                          "--mode=export, or python -m colorjax.convert)") from None
    if metadata["model"] != config.model.name:
        raise ConfigError(FIELD, f"{path} is an export of {metadata['model']!r}; this run "
                          f"trains {config.model.name!r}",
                          f"an export of {config.model.name!r}")
    return metadata


def initial_state(config, objective, total_steps: int, create_state, sharding, say=print):
    """The run's state at step 0: `create_state()` (a random initialisation) without
    `config.init_from`; with it, the export's weights, each placed as the state's own
    (`sharding`, the state's dtype). The random init is then compiled without the leaves
    the export replaces (params, their EMA copy, the exported collections): XLA drops their
    computation, so the init of a 218 M-weight network is not compiled at all."""
    path = export_path(config)
    if not path:
        return create_state()
    from colorjax.inference.artifact import read_export, tree_mismatch
    from colorjax.training.checkpoint import abstract_train_state

    _, metadata, _, variables = read_export(path)
    params = variables.get("params")
    like = abstract_train_state(objective, int(config.data.image_size), total_steps, sharding)
    if not hasattr(like, "model_state") or params is None or \
            jax.tree.structure(like.params) != jax.tree.structure(params):
        raise ConfigError(FIELD, f"{config.model.name!r} trains more networks than its export "
                          f"holds ({type(objective).__name__}); starting from an export works "
                          "for single-network models",
                          "an export of a regression or classification model, eccv16 or "
                          "siggraph17")
    problem = tree_mismatch(variables, objective.inference_variables(like),
                            f"the export {path}", "this run's model")
    if problem:
        raise ConfigError(FIELD, f"{path} does not fit this run's model: {problem}",
                          "an export made with the same model fields (widths, hints, ...) as "
                          "this config's")
    exported = set(variables) - {"params"}
    rest = create_state(lambda state: state.replace(
        params=None, ema_params=None,
        model_state={k: v for k, v in state.model_state.items() if k not in exported}))

    def place(new, spec):
        return jax.device_put(jnp.asarray(new, spec.dtype), spec.sharding)

    params = jax.tree.map(place, params, like.params)
    model_state = {name: jax.tree.map(place, variables[name], like.model_state[name])
                   if name in exported else rest.model_state[name]
                   for name in like.model_state}
    ema = None if like.ema_params is None else jax.tree.map(jnp.copy, params)
    say(f"starting from the weights of {path} ({metadata['model']}, step "
        f"{metadata.get('step')})")
    return rest.replace(params=params, ema_params=ema, model_state=model_state)
