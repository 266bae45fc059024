"""The package's shape, as docs/architecture.md draws it: a short top level, wings that import
only the wings below them, no import cycles, no module a reader has to scroll through."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "colorjax"

# Each wing may import only wings of a lower rank (and itself). docs/architecture.md's
# "Wings" table is this one, in words; the top-level modules are the entry points and the
# package's face, which sit above every wing.
RANKS = {
    "version": 0, "color": 0,
    "config": 1,  # ConfigError and the field checks, dotted fields, the model registry
    "platform": 2,  # XLA:CPU flags, host memory, the mesh, CLI helpers, bars, digests
    "media": 3, "hints": 3,
    "models": 4, "diffusion": 4,
    "metrics": 5,
    "data": 6,
    "presets": 7,
    "objectives": 8,
    "inference": 9,
    "training": 10,
    "video": 11,  # the public video library (colorjax.video.*)
    "convert": 12, "compare": 12, "serving": 12,
    "main": 13, "colorize": 13, "serve": 13, "__init__": 13,
}
MAX_TOP_LEVEL_MODULES = 10
MAX_LINES = 400


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


_MODULE_NAMES = {name for name, _ in _modules()}


def _wing(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports(path: pathlib.Path, module_level_only: bool = False) -> set[str]:
    """The colorjax modules `path` imports (`from colorjax.x import y` counts as the module
    colorjax.x.y where there is one, else as colorjax.x)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "colorjax" or node.module.startswith("colorjax."):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in _MODULE_NAMES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("colorjax."))
    return found


def test_top_level_is_short():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules
    assert not (PACKAGE.parent / "configs").is_dir() or (PACKAGE.parent / "configs").is_symlink()


def test_every_wing_has_a_rank():
    wings = {_wing(name) for name, _ in _modules()}
    assert wings <= set(RANKS), f"give these a rank in RANKS and docs/architecture.md: " \
                                f"{sorted(wings - set(RANKS))}"


@pytest.mark.parametrize("name,path", list(_modules()), ids=lambda v: str(v))
def test_no_import_runs_up_the_layers(name, path):
    wing = _wing(name)
    upward = sorted(t for t in _imports(path)
                    if _wing(t) != wing and RANKS.get(_wing(t), 99) >= RANKS[wing])
    assert not upward, f"{name} (rank {RANKS[wing]}) imports a wing at or above its rank: {upward}"


def test_no_import_cycles():
    """Module-level imports form no cycle (a function-level import cannot deadlock start-up)."""
    known = dict(_modules())
    graph = {name: {t for t in _imports(path, module_level_only=True) if t in known}
             for name, path in known.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_no_module_a_reader_has_to_scroll():
    long = {name: n for name, path in _modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_configs_paths_work_outside_a_checkout(tmp_path, monkeypatch):
    """`configs/` is not an installed package: in a checkout it links to colorjax/presets;
    elsewhere `configs/<name>.py` is read as the installed preset (the README's commands
    work from any directory)."""
    from colorjax.presets import CONFIG_DIR, load_config, preset_path

    assert (PACKAGE.parent / "configs").resolve() == CONFIG_DIR
    monkeypatch.chdir(tmp_path)
    assert preset_path("configs/unet.py") == str(CONFIG_DIR / "unet.py")
    assert load_config("configs/unet.py:cpu").model.name == "unet"
    assert preset_path("configs/nosuch.py") == "configs/nosuch.py"  # then: no such file
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "unet.py").write_text("raise SystemExit('the local file')\n")
    assert preset_path("configs/unet.py") == "configs/unet.py"  # a user's own file wins


def test_the_cli_reads_configs_paths_outside_a_checkout(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                          f"--workdir={tmp_path / 'run'}", "--config.batch_size=0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    # The preset was found and read: the error is about the field, not the file.
    assert out.returncode == 2, out.stderr
    assert "config.batch_size" in out.stderr and "configs/unet.py" not in out.stderr, out.stderr
