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
    with pytest.raises(ValueError, match=r"COLORJAX_CPU_CONV='onednn'.*allowed: auto, eigen, ynnpack"):
        xla_cpu.tuned_xla_flags({"COLORJAX_CPU_CONV": "onednn"})


def test_the_automatic_choice_is_ynnpack_for_ddcolor_on_avx512_only(monkeypatch):
    avx512, avx2 = frozenset({"avx2", "avx512f"}), frozenset({"avx2", "fma"})
    assert xla_cpu.automatic_choice("ddcolor", avx512) == "ynnpack"
    assert xla_cpu.automatic_choice("ddcolor", avx2) == "eigen"
    for model in ("unet", "deoldify", "unetddpm", None):
        assert xla_cpu.automatic_choice(model, avx512) == "eigen"
    monkeypatch.setattr(xla_cpu, "cpu_flags", lambda: avx512)
    flags = f"--a=1 {EIGEN}"
    assert xla_cpu.tuned_xla_flags({"XLA_FLAGS": flags}, "ddcolor") == "--a=1"
    assert xla_cpu.tuned_xla_flags({"XLA_FLAGS": "--a=1"}, "unet") == flags
    # A choice the user made wins over the automatic one.
    assert xla_cpu.tuned_xla_flags({"XLA_FLAGS": "--a=1", "COLORJAX_CPU_CONV": "eigen"},
                                   "ddcolor") == flags
    assert xla_cpu.tuned_xla_flags(
        {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"},
        "unet") is None


def test_too_late_once_the_backend_has_started():
    import jax

    jax.devices()  # this process's backend is up: XLA_FLAGS are no longer read
    environ = {"XLA_FLAGS": f"--a=1 {EIGEN}"}
    assert xla_cpu.configure_for_model("ddcolor", environ) is None
    assert environ == {"XLA_FLAGS": f"--a=1 {EIGEN}"}


def test_colorize_chooses_for_the_exports_network_before_loading(tmp_path, monkeypatch):
    """`colorize`/`serve` call configure_for_export with --model; an unreadable export's
    metadata leaves the choice alone (loading it reports the problem)."""
    import colorjax.colorize as colorize_cli

    seen, original = [], xla_cpu.configure_for_export
    monkeypatch.setattr(xla_cpu, "configure_for_export",
                        lambda path, precision=None: seen.append((path, precision)))
    (tmp_path / "p.png").write_bytes(b"")
    colorize_cli.main([f"--model={tmp_path / 'nope'}", f"--input={tmp_path / 'p.png'}",
                       f"--output={tmp_path / 'out'}", "--precision=bfloat16_convs"])
    assert seen == [(str(tmp_path / "nope"), "bfloat16_convs")]
    environ = {}
    assert original(str(tmp_path / "nope"), None, environ) is None and environ == {}


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


# A program that learns its model after starting (as colorize does), on a CPU said to have
# AVX-512 (the real one may not).
_AN_EXPORTS_PROGRAM = _A_PROGRAM + """
import sys
xla_cpu.cpu_flags = lambda: frozenset({"avx512f"})
print(xla_cpu.configure_for_export(sys.argv[1]))
"""


@pytest.mark.parametrize("model, choice, expected", [
    ("ddcolor", None, "YNN"), ("deoldify", None, "EIGEN"), ("ddcolor", "eigen", "EIGEN")])
def test_an_exports_network_decides_before_the_backend_starts(tmp_path, model, choice,
                                                              expected):
    (tmp_path / "metadata.json").write_text(f'{{"model": "{model}"}}')
    code = _AN_EXPORTS_PROGRAM.replace("sys.argv[1]", repr(str(tmp_path))) + _COMPILE_A_CONV
    out = _fresh(code, choice)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [expected.lower().replace("ynn", "ynnpack"), expected]


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
    assert out.stderr.strip() == "error: COLORJAX_CPU_CONV='fast': allowed: auto, eigen, ynnpack"


def test_the_entry_point_rejects_a_bad_choice(tmp_path):
    env = dict(os.environ, COLORJAX_CPU_CONV="fast")
    out = subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                          f"--workdir={tmp_path}"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2
    assert "COLORJAX_CPU_CONV='fast': allowed: auto, eigen, ynnpack" in out.stderr
    assert not any(tmp_path.iterdir())  # stopped before anything was written


def test_a_program_gets_one_blas_thread_for_numpy_unless_the_user_chose():
    """configure_program also sets OPENBLAS_NUM_THREADS=1 (host_threads.py): OpenBLAS's own
    pool slowed Lab -> sRGB on the photo pipeline's threads 2.6x. A user's value is kept."""
    environ = {}
    xla_cpu.configure_program(environ)
    assert environ["OPENBLAS_NUM_THREADS"] == "1"
    environ = {"OPENBLAS_NUM_THREADS": "8"}
    xla_cpu.configure_program(environ)
    assert environ["OPENBLAS_NUM_THREADS"] == "8"
