"""What is installed: versions and build flags (``fastcascade info``)."""
from __future__ import annotations

import os
import platform


def build_info():
    """Versions of fastcascade, Python, NumPy and Cython-built kernels, and the build flags.

    Returns
    -------
    dict
        ``debug``: bounds checks and AddressSanitizer on (FASTCASCADE_DEBUG=1);
        ``native``: tuned for the building CPU (FASTCASCADE_NATIVE=1); ``cpu_count``.
    """
    import numpy as np

    from fastcascade import __version__
    from fastcascade._kernels import _engine

    return {
        "fastcascade": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "debug": _engine.BUILD_FLAGS["debug"],
        "native": _engine.BUILD_FLAGS["native"],
        "cpu_count": os.cpu_count(),
    }
