"""Fixtures shared by the test modules."""
import pytest

from fastcascade._kernels import _ops

LEVELS = ["avx512", "avx2+fma", "baseline"]


@pytest.fixture(params=LEVELS)
def simd(request):
    """Run the test under each vector variant this CPU has (the level in use before restored
    after): the operators', the engine's and the uniform draws' (_ops.set_simd_level switches
    them all)."""
    before = _ops.simd_level()
    got = _ops.set_simd_level(request.param)
    if got != request.param:
        _ops.set_simd_level(before)
        pytest.skip(f"this CPU has no {request.param} variant")
    yield got
    _ops.set_simd_level(before)
