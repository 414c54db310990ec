"""Ctrl-C during a run: the compiled engine's loop holds no GIL and never looks at Python's
signal flags, so while runs are in flight SIGINT also goes to a C handler that sets a flag the
loop reads at every step (``_interrupt.h``). The loop then stops within a step, the handler it
replaced (Python's) raises KeyboardInterrupt in the main thread, and ``fc.run`` / ``fc.sweep``
decide what to keep.

The handler is installed only from the main thread, and only while SIGINT has Python's default
handler (a program with its own SIGINT handler keeps it, untouched).
"""
from __future__ import annotations

import contextlib
import signal
import threading

from fastcascade._kernels import _engine

__all__ = ["engine_interrupts"]


def _can_install():
    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


@contextlib.contextmanager
def engine_interrupts():
    """Within the block, SIGINT also stops every compiled run in flight (any thread).

    Nested blocks are fine; outside the main thread, or with a custom SIGINT handler, the block
    changes nothing.
    """
    installed = False
    if _can_install():
        try:
            _engine.interrupt_install()
            installed = True
        except OSError:  # no handler to be had: runs are not interruptible, as before
            installed = False
    try:
        yield
    finally:
        if installed:
            _engine.interrupt_restore()

