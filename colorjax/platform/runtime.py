"""Process-wide JAX settings applied once at start-up (before anything is compiled)."""

from __future__ import annotations

import os

import jax


def default_cache_dir() -> str:
    """`$COLORJAX_COMPILATION_CACHE`, else `$XDG_CACHE_HOME/colorjax/jax_compilation_cache`."""
    if os.environ.get("COLORJAX_COMPILATION_CACHE"):
        return os.environ["COLORJAX_COMPILATION_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "colorjax", "jax_compilation_cache")


CACHE_HELP = ("JAX's persistent compilation cache: a directory, or 'none' to disable (default "
              "$COLORJAX_COMPILATION_CACHE or ~/.cache/colorjax/jax_compilation_cache). A second "
              "run of the same model at the same sizes then skips compiling.")


def enable_compilation_cache(cache_dir: str | None = None) -> str | None:
    """JAX's persistent compilation cache, so a second run of a config starts faster.

    `cache_dir` '' or 'none' disables it; None means `default_cache_dir()`.
    """
    if cache_dir is not None and cache_dir.strip().lower() in ("", "none"):
        return None
    path = cache_dir or default_cache_dir()
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    # Cache every program, however quick to compile (JAX's default skips those under a
    # second): a tiny run's ~35 small programs (metrics, colour conversions, the gray
    # baseline) took 1.5 s of its 7 s to compile again on every start, and their entries
    # are small (35 in 0.6 MB). docs/benchmarks.md, "The test suite's time".
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _cpu_processes_write_their_own_entries()
    return path


def _cpu_processes_write_their_own_entries() -> None:
    """Let every process of a multi-process CPU run write its compiled programs to the cache.

    JAX writes entries from process 0 only, against write contention on a shared file
    system. But on CPU each process's programs have keys of their own (launch/local_cpu.sh's
    process 1 never reads an entry of process 0's), so processes 1.. compiled every program
    again on every resume while process 0 read its own. Here each writes its own keys
    (docs/benchmarks.md, "Resumed multi-process runs"). Other backends keep JAX's rule. A
    JAX without the private hook (`compiler._cache_write`) keeps it too."""
    from jax._src import compiler, distributed

    write = getattr(compiler, "_cache_write", None)
    if write is None or getattr(write, "_colorjax_every_process", False):
        return

    def cache_write(cache_key, compile_time_secs, module_name, backend, executable):
        state = distributed.global_state
        process_id = state.process_id
        if process_id == 0 or getattr(backend, "platform", None) != "cpu":
            return write(cache_key, compile_time_secs, module_name, backend, executable)
        state.process_id = 0  # the only thing JAX's check reads; put back at once
        try:
            return write(cache_key, compile_time_secs, module_name, backend, executable)
        finally:
            state.process_id = process_id

    cache_write._colorjax_every_process = True
    compiler._cache_write = cache_write
