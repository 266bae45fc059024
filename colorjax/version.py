"""`colorjax.__version__`, from the installed package's metadata (a leaf: imports nothing of
colorjax, so any module may import it at module level)."""

from importlib import metadata as _metadata

try:  # one source of truth: pyproject.toml, as installed
    __version__ = _metadata.version("colorjax")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
