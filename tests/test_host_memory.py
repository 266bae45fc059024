"""Huge pages for XLA's host buffers: `python -m colorjax.main` re-executes itself once with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (colorjax/platform/host_memory.py), unless told not to."""

import os
import subprocess
import sys
import time

import pytest

from colorjax.platform import host_memory
from conftest import REPO

GLIBC_235 = (2, 35)


def test_the_tunable_is_added_to_an_empty_environment():
    env = host_memory.tuned_environ({"HOME": "/h"}, glibc=GLIBC_235, thp=True)
    assert env == {"HOME": "/h", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def test_other_tunables_are_kept():
    env = host_memory.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                    glibc=(2, 39), thp=True)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ, glibc, thp", [
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC_235, True),  # the user's own choice
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, GLIBC_235, True),  # already re-executed
    ({"COLORJAX_MALLOC": "default"}, GLIBC_235, True),                # opted out
    ({"COLORJAX_MALLOC": " Default "}, GLIBC_235, True),
    ({}, (2, 34), True),   # glibc without the tunable
    ({}, GLIBC_235, False),  # transparent huge pages off in the kernel
])
def test_nothing_changes_when_it_should_not(environ, glibc, thp):
    assert host_memory.tuned_environ(environ, glibc=glibc, thp=thp) is None


def test_the_untuned_environment_drops_only_the_huge_pages():
    environ = {"HOME": "/h", "COLORJAX_MALLOC": "hugepages",
               "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
    assert host_memory.untuned_environ(environ) == {
        "HOME": "/h", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert host_memory.untuned_environ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) == {}


def test_explicit_hugepages_is_the_default_behaviour():
    env = host_memory.tuned_environ({"COLORJAX_MALLOC": "hugepages"}, glibc=GLIBC_235, thp=True)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


def test_a_bad_choice_names_the_allowed_values():
    with pytest.raises(ValueError, match=r"COLORJAX_MALLOC='huge'.*allowed: hugepages, default"):
        host_memory.tuned_environ({"COLORJAX_MALLOC": "huge"}, glibc=GLIBC_235, thp=True)


def test_this_machine_reports_its_glibc():
    version = host_memory.glibc_version()
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
        assert version is not None and version >= (2, 17)
    else:
        assert version is None


@pytest.mark.parametrize("text, on", [("always [madvise] never\n", True),
                                      ("[always] madvise never\n", True),
                                      ("always madvise [never]\n", False)])
def test_the_kernel_setting_is_read(tmp_path, text, on):
    path = tmp_path / "enabled"
    path.write_text(text)
    assert host_memory.huge_pages_possible(str(path)) is on
    assert host_memory.huge_pages_possible(str(tmp_path / "absent")) is False


def _environ_of(pid: int) -> dict[str, str] | None:
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                if "=" in item)


def _watch_main(tmp_path, **extra_env):
    """Start `python -m colorjax.main` (an eval of an empty workdir: it fails after JAX has
    started) and collect what /proc shows of its environment until it exits."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "COLORJAX_MALLOC")}
    env.update(extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
         f"--workdir={tmp_path / 'empty'}", "--mode=eval"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (environ := _environ_of(proc.pid)) is not None:
            seen.append(environ.get("GLIBC_TUNABLES"))
        time.sleep(0.01)
    proc.kill()
    _, err = proc.communicate()
    return seen, err


needs_huge_pages = pytest.mark.skipif(
    host_memory.tuned_environ({}) is None,
    reason="this machine has no glibc >= 2.35 with transparent huge pages")


@needs_huge_pages
def test_the_real_entry_point_reexecutes_itself_with_huge_pages(tmp_path):
    seen, err = _watch_main(tmp_path)
    assert "glibc.malloc.hugetlb=1" in seen, (seen[:3], err[-2000:])
    # Once: what it saw before the exec had no tunable, and after it, exactly one.
    assert all(s in (None, "glibc.malloc.hugetlb=1") for s in seen), set(seen)


@needs_huge_pages
def test_colorjax_malloc_default_leaves_malloc_alone(tmp_path):
    seen, err = _watch_main(tmp_path, COLORJAX_MALLOC="default")
    assert seen and set(seen) == {None}, (set(seen), err[-2000:])


def test_a_bad_colorjax_malloc_stops_the_entry_point_with_one_line(tmp_path):
    env = dict(os.environ, COLORJAX_MALLOC="sometimes")
    out = subprocess.run([sys.executable, "-m", "colorjax.main", "--config=configs/unet.py:cpu",
                          f"--workdir={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["error: COLORJAX_MALLOC='sometimes': allowed: hugepages, default"], lines
