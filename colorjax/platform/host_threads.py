"""One BLAS thread for NumPy in colorjax's programs (set by `xla_cpu.configure_program`).

NumPy's wheels link OpenBLAS, which runs even a (pixels x 3) @ (3 x 3) product, the matrix
in every Lab -> sRGB conversion, on a pool of threads of its own. Those threads then fight
the photo pipeline's own (colorjax/media/photos.py, `_WORKERS`) and the data workers for
the cores: Lab -> sRGB of a 512x768 photo took 20 ms on 2 threads with OpenBLAS's pool,
7.8 ms with one BLAS thread, with the same bits (2-core Intel Xeon, 2026-12-07;
docs/benchmarks.md, "bfloat16 convolutions on AMX", its "Colorize throughput" part).
colorjax's heavy linear algebra runs in XLA, which does not use NumPy's BLAS. OpenBLAS reads the variable once, when NumPy is first imported, so
programs set it first thing; an OPENBLAS_NUM_THREADS of the user's is kept.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

ENV_VAR = "OPENBLAS_NUM_THREADS"


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set OPENBLAS_NUM_THREADS=1 unless it is set already (children inherit it)."""
    environ.setdefault(ENV_VAR, "1")
