"""BLAS threads while runs execute: one per run (threadpoolctl).

The compiled Linear kernels call BLAS (``scipy.linalg.cython_blas.dgemm``) on wide batches. Runs
execute in parallel threads, one run per thread; a multi-threaded BLAS inside each would
oversubscribe the cores (and its idle workers spin), so ``fc.run`` pins BLAS to one thread for
the duration of its runs when the plan calls BLAS at all. The pin is reference-counted, so that
concurrent ``fc.run`` calls (a threaded sweep) share it and the original limits come back when
the last one ends. Without threadpoolctl installed this is a no-op.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from fastcascade._kernels import _ops

# importing the kernels loads the BLAS library they call, so that threadpoolctl can report it
BLAS_USER = _ops.__name__

__all__ = ["single_threaded_blas", "blas_libraries"]

_lock = threading.Lock()
_depth = 0
_limiter = None
_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return None
        _controller = ThreadpoolController()
    return _controller


@contextmanager
def single_threaded_blas(active=True):
    """Context manager: every loaded BLAS limited to one thread inside (when ``active``)."""
    global _depth, _limiter
    if not active:
        yield
        return
    with _lock:
        if _depth == 0:
            controller = _get_controller()
            _limiter = controller.limit(limits=1, user_api="blas") if controller else None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None


def blas_libraries():
    """The BLAS libraries loaded in this process (as threadpoolctl reports them), or None."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: lib.get(k) for k in ("internal_api", "version", "num_threads", "filepath",
                                      "architecture")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]
