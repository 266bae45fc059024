"""README's two commands work verbatim, and CI runs exactly the test one.

The machines this project is built on have pyenv with an older global Python and 3.12
installed beside it: `python3.12` there is a shim that fails ("pyenv: python3.12: command
not found"). scripts/find_python.sh must find the real one, or say in one line how to
get one. Those machines are simulated with a PATH and a PYENV_ROOT of our own.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

FIND = REPO / "scripts" / "find_python.sh"
# The real interpreter behind this venv (a venv's own python needs its pyvenv.cfg beside it).
REAL_PYTHON = pathlib.Path(os.path.realpath(sys.executable))
SH = shutil.which("sh") or "/bin/sh"


def readme_commands() -> list[str]:
    """The bash blocks of README's "Two commands" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.DOTALL)


def _shim(path: pathlib.Path, name: str) -> None:
    """What pyenv puts on PATH for a version that is installed but not selected."""
    path.write_text(f"#!{SH}\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
    path.chmod(0o755)


def fresh_pyenv_machine(tmp_path) -> tuple[dict, pathlib.Path]:
    """(env, the Python 3.12 the script should find) of a simulated fresh machine: on PATH
    only sh, failing python3.12/python3.13 shims and an old python3; 3.12 under pyenv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(SH)
    for name in ("python3.12", "python3.13"):
        _shim(bin_dir / name, name)
    old = bin_dir / "python3"  # a Python 3.11: too old
    old.write_text(f"#!{SH}\nexit 1\n")
    old.chmod(0o755)
    real = tmp_path / "pyenv" / "versions" / "3.12.1" / "bin" / "python3"
    real.parent.mkdir(parents=True)
    real.symlink_to(REAL_PYTHON)
    (tmp_path / "pyenv" / "versions" / "3.11.7" / "bin").mkdir(parents=True)
    (tmp_path / "pyenv" / "versions" / "3.11.7" / "bin" / "python3").symlink_to(old)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"),
           "PYENV_ROOT": str(tmp_path / "pyenv")}
    return env, real


def find_python(env) -> subprocess.CompletedProcess:
    return subprocess.run([SH, str(FIND)], env=env, capture_output=True, text=True,
                          timeout=60)


def _version(python: str) -> tuple[int, int]:
    out = subprocess.check_output([python, "-c", "import sys; print(*sys.version_info[:2])"],
                                  text=True)
    return tuple(int(v) for v in out.split())


def test_readme_has_the_two_commands_each_one_line():
    train, tests = readme_commands()
    for command in (train, tests):
        assert "\n" not in command
        assert command.startswith('PY=$(sh scripts/find_python.sh) && "$PY" -m venv .venv && ')
        assert "python3.12 " not in command  # a failing shim on pyenv machines
    assert train.endswith("-m colorjax.main --config=configs/unet.py:cpu --workdir=runs/demo")
    assert tests.endswith(".venv/bin/python -m pytest -q")


def test_ci_runs_the_readme_test_command_verbatim_and_nothing_of_its_own():
    ci = (REPO / ".ci" / "run").read_text()
    _, tests = readme_commands()
    assert tests in ci.splitlines()
    assert "pyenv" not in ci
    assert "PATH=" not in ci  # no Python search of its own
    assert "python3.12" not in ci


def test_finds_pyenvs_python_when_python312_on_path_is_a_failing_shim(tmp_path):
    env, real = fresh_pyenv_machine(tmp_path)
    out = find_python(env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(real)
    assert _version(out.stdout.strip()) >= (3, 12)


def test_the_readme_first_step_runs_verbatim_on_a_fresh_pyenv_machine(tmp_path):
    """README's command up to the venv, as a shell runs it, from the repository root."""
    env, real = fresh_pyenv_machine(tmp_path)
    first = readme_commands()[1].split(" && ")[0]
    shell = shutil.which("bash") or SH
    out = subprocess.run([shell, "-c", first + ' && "$PY" -c "import sys; '
                          'print(sys.version_info >= (3, 12))"'],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_a_working_python312_on_path_is_used(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.12").symlink_to(REAL_PYTHON)
    out = find_python({"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(bin_dir / "python3.12")


def test_finds_one_here_without_python312_on_path(tmp_path):
    """This machine, with PATH cut to the system directories (no pyenv shims)."""
    home = pathlib.Path.home()
    if not list((home / ".pyenv" / "versions").glob("3.1[2-9]*/bin/python3")):
        pytest.skip("no pyenv Python 3.12+ here: not a machine of the kind this checks")
    out = find_python({"PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert _version(out.stdout.strip()) >= (3, 12)


def test_with_no_python_it_says_in_one_line_how_to_get_one(tmp_path):
    (tmp_path / "bin").mkdir()
    out = find_python({"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)})
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "3.12" in lines[0]
    assert "pyenv install" in lines[0]
