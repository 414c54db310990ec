"""What is installed: versions and build flags (``fastcascade info``)."""
from __future__ import annotations

import os
import platform

import numpy as np
import scipy

from fastcascade._blas import blas_libraries
from fastcascade._kernels import _engine, _ops
from fastcascade._version import __version__


def build_info():
    """Versions of fastcascade, Python, NumPy and Cython-built kernels, and the build flags.

    Returns
    -------
    dict
        ``debug``: bounds checks and AddressSanitizer on (FASTCASCADE_DEBUG=1);
        ``native``: tuned for the building CPU (FASTCASCADE_NATIVE=1); ``simd``: the vector
        kernels chosen at import for this CPU ("avx512" with AVX-512 F/DQ/VL/BW, "avx2+fma", or
        "baseline" SSE2 on older CPUs; FASTCASCADE_SIMD=avx2+fma or baseline caps it; "scalar"
        for compilers without vector extensions);
        ``blas``: the BLAS the Linear kernels call and ``blas_threshold``, the batch size times
        widths from which they do; ``cpu_count``.
    """
    return {
        "fastcascade": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "debug": _engine.BUILD_FLAGS["debug"],
        "native": _engine.BUILD_FLAGS["native"],
        "simd": _ops.simd_level(),
        "blas": _blas_name(),
        "blas_threshold": _ops.get_blas_threshold(),
        "cpu_count": os.cpu_count(),
    }


def _blas_name():
    """scipy.linalg.cython_blas, and the library behind it when threadpoolctl can tell."""
    libs = blas_libraries() or []
    for lib in libs:
        if "scipy" in (lib.get("filepath") or "") and "openblas64_" not in lib["filepath"]:
            return f"scipy {scipy.__version__} cython_blas ({lib['internal_api']} " \
                   f"{lib['version']}, {lib['architecture']})"
    return f"scipy {scipy.__version__} cython_blas"
