"""Eigen convolutions on the CPU: colorjax's programs (every `python -m colorjax.X`, the
benchmarks, this suite) add `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`
to XLA_FLAGS (colorjax/platform/xla_cpu.py) unless told not to, and XLA then compiles convolutions
without YNNPACK; `import colorjax` alone changes nothing."""

import os
import subprocess
import sys

import pytest

from colorjax.platform import xla_cpu
from conftest import REPO, TEST_OPT_LEVEL, TEST_XLA_FLAGS, xla_flags_for_tests

EIGEN = xla_cpu.EIGEN_CONVS


def test_the_flag_is_added_after_the_users_flags():
    assert xla_cpu.tuned_xla_flags({}) == EIGEN
    assert xla_cpu.tuned_xla_flags({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}) \
        == f"--xla_force_host_platform_device_count=2 {EIGEN}"
    assert xla_cpu.tuned_xla_flags({"COLORJAX_CPU_CONV": " Eigen "}) == EIGEN


@pytest.mark.parametrize("environ", [
    {"XLA_FLAGS": EIGEN},                                                  # already added
    {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="},              # the user's choice
    {"XLA_FLAGS": "--a=1 --xla_cpu_experimental_ynn_fusion_type=+individual_convolution"},
    {"COLORJAX_CPU_CONV": "ynnpack"},                                      # opted out
    {"COLORJAX_CPU_CONV": "ynnpack", "XLA_FLAGS": "--a=1"},
])
def test_nothing_changes_when_it_should_not(environ):
    assert xla_cpu.tuned_xla_flags(environ) is None


def test_opting_out_removes_a_flag_inherited_from_colorjax():
    environ = {"COLORJAX_CPU_CONV": "ynnpack", "XLA_FLAGS": f"--a=1 {EIGEN} --b=2"}
    assert xla_cpu.tuned_xla_flags(environ) == "--a=1 --b=2"


def test_configure_is_idempotent():
    environ = {"XLA_FLAGS": "--a=1"}
    xla_cpu.configure(environ)
    xla_cpu.configure(environ)
    assert environ["XLA_FLAGS"] == f"--a=1 {EIGEN}"


def test_the_test_suites_flags_are_kept_and_eigen_added_once():
    """conftest's XLA_FLAGS (two devices, LLVM -O0) through the configure() of the test
    process, then of a CLI run it starts (which inherits them): -O0 once, Eigen once; opting
    out removes only Eigen."""
    environ = {"XLA_FLAGS": TEST_XLA_FLAGS}
    xla_cpu.configure(environ)
    child = dict(environ)
    xla_cpu.configure(child)
    assert environ["XLA_FLAGS"] == child["XLA_FLAGS"] == f"{TEST_XLA_FLAGS} {EIGEN}"
    assert child["XLA_FLAGS"].split().count(TEST_OPT_LEVEL) == 1
    child["COLORJAX_CPU_CONV"] = "ynnpack"
    xla_cpu.configure(child)
    assert child["XLA_FLAGS"] == TEST_XLA_FLAGS


def test_a_bad_choice_names_the_allowed_values():
    with pytest.raises(ValueError, match=r"COLORJAX_CPU_CONV='onednn'.*allowed: eigen, ynnpack"):
        xla_cpu.tuned_xla_flags({"COLORJAX_CPU_CONV": "onednn"})


# A conv large enough for XLA to give it to YNNPACK by default (small ones stay with Eigen).
_COMPILE_A_CONV = """
import jax, jax.numpy as jnp
x, k = jnp.ones((4, 32, 32, 32)), jnp.ones((3, 3, 32, 32))
conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
hlo = conv.lower(x, k).compile().as_text()
assert "convolution(" in hlo
print("YNN" if "ynn_fusion" in hlo else "EIGEN")
"""
_A_PROGRAM = "from colorjax.platform import xla_cpu\nxla_cpu.configure_program()\n"
_A_LIBRARY_USER = """
import os
before = os.environ.get("XLA_FLAGS")
import colorjax, colorjax.colorize, colorjax.training.loop, colorjax.serve, colorjax.compare
assert os.environ.get("XLA_FLAGS") == before, os.environ.get("XLA_FLAGS")
"""


def _fresh(code, choice=None):
    env = {k: v for k, v in os.environ.items() if k != "COLORJAX_CPU_CONV"}
    # None of colorjax's flags inherited from this process: only the tests' -O0.
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags_for_tests(None))
    if choice is not None:
        env["COLORJAX_CPU_CONV"] = choice
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("choice, expected", [(None, "EIGEN"), ("eigen", "EIGEN"),
                                              ("ynnpack", "YNN")])
def test_a_program_decides_how_xla_compiles_a_conv(choice, expected):
    out = _fresh(_A_PROGRAM + _COMPILE_A_CONV, choice)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == expected


def test_importing_colorjax_changes_no_process_setting():
    """A program of the user's that imports colorjax (the library, its CLIs' modules) keeps
    its XLA_FLAGS and XLA's own convolutions."""
    out = _fresh(_A_LIBRARY_USER + _COMPILE_A_CONV)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "YNN"


ENTRY_POINTS = ["colorjax.main", "colorjax.colorize", "colorjax.compare", "colorjax.serve",
                "colorjax.convert", "colorjax.data.prepare"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_point_applies_the_choice_first(module):
    """Each `python -m` program configures XLA:CPU before anything else: a bad choice is
    its one line and exit status 2, even before `--help`."""
    env = dict(os.environ, COLORJAX_CPU_CONV="fast")
    out = subprocess.run([sys.executable, "-m", module, "--help"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, (out.stdout[-500:], out.stderr[-2000:])
    assert out.stderr.strip() == "error: COLORJAX_CPU_CONV='fast': allowed: eigen, ynnpack"


def test_the_entry_point_rejects_a_bad_choice(tmp_path):
    env = dict(os.environ, COLORJAX_CPU_CONV="fast")
    out = subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                          f"--workdir={tmp_path}"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2
    assert "COLORJAX_CPU_CONV='fast': allowed: eigen, ynnpack" in out.stderr
    assert not any(tmp_path.iterdir())  # stopped before anything was written
