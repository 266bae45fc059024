"""Exports: --mode=export writes only inference variables; Colorizer.load restores them and
predicts exactly what the training-time `predict` does; bad directories fail clearly.

`tiny_workdir`/`tiny_export` are shared with tests/test_colorize.py and tests/test_serve*.py
(imported from this module, built once per session).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import color
from colorjax.inference import artifact
from colorjax.training import export
from colorjax.platform import integrity
from colorjax.presets import load_config
from colorjax.objectives import make_objective
from conftest import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = 32
# The same tiny UNet on the command line (for --mode=export in a subprocess).
TINY_FLAGS = ["--config=configs/unet.py:cpu", "--config.model.features=(8, 16)",
              f"--config.data.image_size={SIZE}", "--config.ema_decay=0.5"]
_CACHE = {}


# The same tiny UNet as a config: `tiny_config("unet", **TINY)`. With an EMA copy, so the
# tests can tell which parameters are exported.
TINY = {"size": SIZE, "ema_decay": 0.5}


def _filled(abstract, seed):
    """A concrete state with the abstract one's structure: random floats, zero integers.
    (No compilation: cheaper than running `init` on a loaded CPU.)"""
    leaves, treedef = jax.tree.flatten(abstract)
    rng = np.random.default_rng(seed)
    out = [jnp.asarray(rng.normal(0.0, 0.2, l.shape).astype(l.dtype))
           if jnp.issubdtype(l.dtype, jnp.floating) else jnp.zeros(l.shape, l.dtype)
           for l in leaves]
    return jax.tree.unflatten(treedef, out)


def tiny_state(config, seed=0):
    """A unet train state whose EMA params, params and BatchNorm statistics all differ."""
    obj = make_objective(config)
    batch = {"l": jnp.zeros((1, SIZE, SIZE, 1)), "ab": jnp.zeros((1, SIZE, SIZE, 2))}
    state = _filled(jax.eval_shape(lambda rng: obj.init(rng, batch, 10), jax.random.key(0)), seed)
    var = jax.tree.map(jnp.abs, state.model_state)  # BatchNorm variances must be positive
    state = state.replace(model_state=var, step=jnp.asarray(2, jnp.int32))
    return obj, state


def write_checkpoint(wd, state, config, step: int = 2) -> None:
    """`wd`/checkpoints/`step` holding `state` and `config`, as the training loop writes it."""
    from colorjax.training.checkpoint import TrainCheckpointer

    ckpt = TrainCheckpointer(str(pathlib.Path(wd) / "checkpoints"), async_save=False)
    ckpt.save(step, state, {"iterator": "x"}, config)
    ckpt.close()


def tiny_workdir(root):
    """A workdir as training leaves it: checkpoints/2 (state, data, config) and eval/*.json."""
    if "workdir" not in _CACHE:
        config = tiny_config("unet", **TINY)
        obj, state = tiny_state(config)
        wd = pathlib.Path(root) / "workdir"
        write_checkpoint(wd, state, config)
        (wd / "eval").mkdir()
        table = {"unet": {"ssim": 0.5, "ciede2000": 9.0}, "gray baseline (ab = 0)": {"ssim": 0.4}}
        (wd / "eval" / "validation_step_1.json").write_text(json.dumps({"old": {}}))
        (wd / "eval" / "validation_step_2.json").write_text(json.dumps(table))
        _CACHE["workdir"] = (wd, config, obj, state)
    return _CACHE["workdir"]


def tiny_export(root):
    """(export dir, config, objective, train state) of the tiny workdir, exported once."""
    if "export" not in _CACHE:
        wd, config, obj, state = tiny_workdir(root)
        path = export.export_checkpoint(config, str(wd))
        _CACHE["export"] = (pathlib.Path(path), config, obj, state)
    return _CACHE["export"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")


def test_export_holds_only_inference_variables(exported):
    path, config, obj, state = exported
    assert path == path.parent.parent.parent / "workdir" / "export" / "step_2"
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["format"] == "colorjax-export"
    assert meta["format_version"] == artifact.FORMAT_VERSION == 2
    assert (meta["model"], meta["family"], meta["step"], meta["image_size"]) == \
        ("unet", "regression", 2, SIZE)
    assert meta["samples"] is False
    assert meta["colorjax_version"]
    assert meta["metrics"]["file"] == os.path.join("eval", "validation_step_2.json")
    assert meta["metrics"]["table"]["unet"]["ciede2000"] == 9.0
    assert json.loads((path / "config.json").read_text())["model"]["features"] == [8, 16]

    _, _, _, variables = artifact.read_export(str(path))
    assert set(variables) == {"params", "batch_stats"}  # no optimizer state, no step
    for saved, ema, raw in zip(jax.tree.leaves(variables["params"]),
                               jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(saved, ema)  # the EMA copy, not the raw parameters
        assert not np.array_equal(saved, raw)
    for saved, stat in zip(jax.tree.leaves(variables["batch_stats"]),
                           jax.tree.leaves(state.model_state)):
        np.testing.assert_array_equal(saved, stat)


def test_loaded_colorizer_predicts_what_training_predicts(exported):
    from colorjax import Colorizer

    path, config, obj, state = exported
    colorizer = Colorizer.load(str(path))
    rgb = np.random.default_rng(1).uniform(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    l_norm, _ = color.rgb_to_model_inputs(rgb)
    rng = jax.random.key(3)
    expected = np.asarray(jax.jit(obj.predict)(state, jnp.asarray(l_norm), rng))
    np.testing.assert_allclose(colorizer.predict_ab(l_norm, rng), expected, atol=1e-5)

    # The whole photo path at the working size: ab in Lab units, as predict gives it.
    photos = [_photo(x) for x in rgb]
    got = colorizer.predict_photos(photos)
    for i in range(3):
        np.testing.assert_allclose(got[i][0], color.denormalize_ab(expected[i]), atol=1e-3)


@pytest.mark.slow
def test_a_colorizer_computes_in_the_precision_asked_for(exported, tmp_path):
    """`Colorizer.load(precision=...)` / `colorize --precision`: the network runs in bfloat16
    (its float32 weights kept), close to float32; anything else is refused by name."""
    from colorjax import Colorizer

    path = str(exported[0])
    f32, bf16 = Colorizer.load(path), Colorizer.load(path, precision="bfloat16")
    assert f32.objective.dtype == jnp.float32 and bf16.objective.dtype == jnp.bfloat16
    assert jax.tree.leaves(bf16.variables)[0].dtype == jnp.float32
    l_norm, _ = color.rgb_to_model_inputs(
        np.random.default_rng(2).uniform(size=(2, SIZE, SIZE, 3)).astype(np.float32))
    a, b = f32.predict_ab(l_norm), bf16.predict_ab(l_norm)
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, atol=0.05)
    with pytest.raises(ValueError, match="precision='float16'.*float32, bfloat16"):
        Colorizer.load(path, precision="float16")

    from PIL import Image
    Image.fromarray(np.full((9, 11), 120, np.uint8)).save(tmp_path / "g.png")
    cmd = [sys.executable, "-m", "colorjax.colorize", f"--model={path}",
           f"--input={tmp_path / 'g.png'}", f"--output={tmp_path / 'out'}"]
    res = subprocess.run(cmd + ["--precision=bfloat16"], cwd=REPO, capture_output=True,
                         text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "out" / "g.png").is_file()
    res = subprocess.run(cmd + ["--precision=half"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "--precision" in res.stderr and "bfloat16" in res.stderr


def _photo(rgb):
    from colorjax.media.photos import to_photo
    return to_photo(rgb)


@pytest.mark.slow
def test_cli_export_then_load_in_a_light_process(exported, tmp_path):
    wd = exported[0].parents[2] / "workdir"
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "colorjax.main", *TINY_FLAGS, f"--workdir={wd}",
           "--mode=export", f"--export_dir={out}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"exported to {out}" in res.stdout
    assert json.loads((out / "metadata.json").read_text())["step"] == 2

    # Loading neither imports the training loop nor the data pipeline; `import colorjax`
    # alone does not even import JAX.
    code = (
        "import sys, colorjax\n"
        "assert 'jax' not in sys.modules\n"
        f"c = colorjax.Colorizer.load({str(out)!r})\n"
        "bad = [m for m in sys.modules if m.startswith(('colorjax.training.loop',"
        " 'colorjax.data', 'colorjax.training.checkpoint', 'colorjax.training.evaluate',"
        " 'tensorflow_datasets', 'grain'))]\n"
        "assert not bad, bad\n"
        "import numpy as np\n"
        "print(c.colorize(np.zeros((5, 7), np.uint8)).shape)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(5, 7, 3)" in res.stdout


def test_export_of_missing_or_mismatched_checkpoint_is_a_clear_error(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints in .*train first"):
        export.export_checkpoint(tiny_config("unet", **TINY), str(tmp_path / "empty"))
    assert not (tmp_path / "empty").exists()
    wd = exported[0].parents[1]
    other = tiny_config("unet", **TINY)
    other.model.features = (4, 8)  # not what was trained
    with pytest.raises(export.ExportError, match="does not match the model --config describes: "
                                                 ".*Pass the --config file and overrides"):
        export.export_checkpoint(other, str(wd), str(tmp_path / "x"))
    other = tiny_config("unet", **TINY)
    other.eval.step = 5
    with pytest.raises(FileNotFoundError, match=r"for step 5 .*available: \[2\]"):
        export.export_checkpoint(other, str(wd), str(tmp_path / "x"))


def test_export_refuses_to_overwrite_a_foreign_directory(exported, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    variables = artifact.read_export(str(exported[0]))[3]
    with pytest.raises(export.ExportError, match="not a colorjax export"):
        export.write_export(str(tmp_path), variables, exported[1], step=2)
    # An older export is replaced (re-running --mode=export works). On a copy: the shared
    # export's metadata (its eval table) is what the page tests read.
    older = shutil.copytree(exported[0], tmp_path / "older")
    again = export.write_export(str(older), variables, exported[1], step=2)
    assert json.loads((pathlib.Path(again) / "metadata.json").read_text())["step"] == 2


def test_loading_something_else_fails_clearly(exported, tmp_path):
    from colorjax import Colorizer

    path = exported[0]
    with pytest.raises(artifact.ExportError, match="no export directory"):
        Colorizer.load(str(tmp_path / "nowhere"))
    with pytest.raises(artifact.ExportError, match="is not a colorjax export"):
        Colorizer.load(str(tmp_path))
    # A training workdir: the error points at its export.
    with pytest.raises(artifact.ExportError, match="looks like a workdir; its latest export is"):
        Colorizer.load(str(path.parents[1]))

    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    meta = json.loads((bad / "metadata.json").read_text())

    def write_metadata(text: str) -> None:  # with its digest: as written, not damaged
        (bad / "metadata.json").write_text(text)
        integrity.write_sidecar(str(bad / "metadata.json"))

    write_metadata(json.dumps(meta | {"model": "transformer"}))
    with pytest.raises(artifact.ExportError, match="model 'transformer', which this colorjax does "
                                                 "not know; known models: .*unet"):
        Colorizer.load(str(bad))
    write_metadata(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(artifact.ExportError, match="upgrade colorjax"):
        Colorizer.load(str(bad))
    write_metadata("{not json")
    with pytest.raises(artifact.ExportError, match="is not a colorjax export"):
        Colorizer.load(str(bad))

    # Parameters that do not fit the configured network (a version-1 export from before
    # digests were recorded: with them, the edited config.json is reported as damaged,
    # tested elsewhere).
    (bad / "metadata.json.sha256").unlink()
    (bad / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items()
                                                   if k != "sha256"} | {"format_version": 1}))
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["features"] = [4, 8]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(artifact.ExportError, match="do not match model 'unet'"):
        Colorizer.load(str(bad))


# --- the other families: every one exports and predicts the same ---------------------------


def _family_config(model):
    """A test-sized config of `model` and its objective. Every family listed is in the tree:
    a missing config file or an objective that cannot be built or exported is a failure.
    `unetddim+vgg16`: the diffusion UNet conditioned on frozen VGG16 features."""
    model, _, backbone = model.partition("+")
    c = load_config(model, "cpu")
    c.data.image_size = 16
    c.ema_decay = 0.5
    if model == "resnet":
        c.model.width = 8
    elif model.endswith("vae"):
        c.model.features, c.model.encoder_features, c.model.latent_dim = (8, 16), (8, 16), 4
    elif model == "unetgan":
        c.model.features = (8, 16)
        c.adversarial.disc_features, c.adversarial.disc_layers = 8, 2
    elif model in ("unetddpm", "unetddim"):
        c.model.features, c.model.attention_levels, c.model.dropout = (8, 16), (1,), 0.0
        c.diffusion.timesteps = 20
        c.sampler.name, c.sampler.steps = "ddim", 3
        if backbone:
            c.model.backbone, c.model.backbone_width = backbone, 8
    obj = make_objective(c)
    assert hasattr(obj, "inference_variables"), f"{model}'s objective cannot be exported"
    return c, obj


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet", "unetgan", "unetvae", "unetddim", "unetddim+vgg16"])
def test_other_families_export_and_predict_the_same(model, tmp_path):
    from colorjax import Colorizer

    config, obj = _family_config(model)
    model = config.model.name
    batch = {"l": jnp.zeros((1, 16, 16, 1)), "ab": jnp.zeros((1, 16, 16, 2))}
    state = _filled(jax.eval_shape(lambda rng: obj.init(rng, batch, 10), jax.random.key(0)), seed=1)
    state = state.replace(model_state=jax.tree.map(jnp.abs, state.model_state))
    if "backbone" in state.model_state:  # random VGG16 weights overflow; use the real ones
        from colorjax.models.backbone import load_backbone
        state = state.replace(model_state={"backbone": load_backbone(config.model.backbone)})
    variables = obj.inference_variables(state)
    path = export.write_export(str(tmp_path / model), variables, config, step=7)
    colorizer = Colorizer.load(path)
    meta = colorizer.metadata
    assert meta["model"] == model
    assert meta["samples"] == (model in ("unetvae", "unetddim"))
    # Neither a VAE's encoder nor a GAN's discriminator nor any optimizer state.
    paths = " ".join(jax.tree_util.keystr(k) for k, _ in
                     jax.tree_util.tree_flatten_with_path(colorizer.variables)[0]).lower()
    for word in ("encoder", "disc", "opt", "mu", "nu", "count"):
        assert f"'{word}" not in paths, (word, paths)

    l_norm = color.normalize_l(np.random.default_rng(2).uniform(0, 100, (2, 16, 16, 1)))
    rng = jax.random.key(5)
    np.testing.assert_allclose(colorizer.predict_ab(l_norm, rng),
                               jax.jit(obj.predict)(state, jnp.asarray(l_norm, jnp.float32), rng),
                               atol=1e-5)
    if colorizer.samples:  # two photos: the batch shape compiled above, no new compilation
        gray = np.full((20, 30), 128, np.uint8)
        two = colorizer.colorize([gray, gray], num_samples=2)[0]
        assert two.shape == (2, 20, 30, 3)
        assert not np.array_equal(two[0], two[1])


def test_nonfinite_leaves_names_each_leaf_that_holds_nan_or_inf():
    tree = {"params": {"a": jnp.ones(3), "b": jnp.array([1.0, jnp.inf]),
                       "c": {"k": jnp.full((2, 2), jnp.nan)}},
            "batch_stats": {"n": jnp.arange(3)}}  # integers: never "non-finite"
    assert artifact.nonfinite_leaves(tree) == ["params/b", "params/c/k"]
    assert artifact.nonfinite_leaves({"params": {"a": np.ones(2)}}) == []
