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
    # Cache everything that took more than a second to compile (JAX's default skips
    # small programs; the train step and evaluators are what we want to keep).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
