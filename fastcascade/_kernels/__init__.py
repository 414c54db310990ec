"""Compiled kernels (private). The public API lives in :mod:`fastcascade`."""
