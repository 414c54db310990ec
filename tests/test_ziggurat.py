"""The engine's inlined standard normals (_ziggurat.h): numpy's draws bit for bit.

The tables are read from numpy's own random_standard_normal at import; these tests check the
draws against ``Generator.standard_normal`` on the same PCG64 stream (both slow paths crossed),
the tables against the raw 64-bit draws, and that the import-time check rejects wrong tables.
"""
import numpy as np
import pytest

from fastcascade._kernels import _noise

# numpy's ziggurat: the tail begins at r (ziggurat_nor_r); draws beyond it take the slow path
TAIL_R = 3.6541528853610088


def _pair(seed):
    return np.random.Generator(np.random.PCG64(seed)), np.random.Generator(np.random.PCG64(seed))


def test_the_inlined_ziggurat_is_in_use():
    """The tables read from this numpy passed the import-time check (else every normal is
    numpy's own function, correct but slower)."""
    assert _noise._ziggurat_ok()


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 63, 64, 65, 1000])
def test_draws_are_numpys_and_the_stream_continues(seed, n):
    ours, ref = _pair(seed)
    got, expected = _noise._normal_fill(ours, n), ref.standard_normal(n)
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    assert ours.bit_generator.state == ref.bit_generator.state
    assert ours.random() == ref.random()


def test_long_streams_cross_both_slow_paths():
    """10^6 draws: about 1% take the slow path (the wedges), among them about 260 from the tail
    (|x| > r); all equal numpy's, and so does the stream afterwards."""
    ours, ref = _pair(7)
    got = np.concatenate([_noise._normal_fill(ours, k) for k in (1, 999_999)])
    expected = ref.standard_normal(1_000_000)
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    assert np.count_nonzero(np.abs(got) > TAIL_R) > 100
    assert ours.bit_generator.state == ref.bit_generator.state


def test_tables_reproduce_numpys_fast_path():
    """From the raw draws: where rabs < ki[idx], numpy's normal is +-rabs wi[idx]; that case is
    about 99% of draws (the rest go on drawing, so only the draws before the first such one are
    compared)."""
    ki, wi = _noise._ziggurat_tables()
    raw = np.random.Generator(np.random.PCG64(3)).bit_generator.random_raw(20000)
    idx, sign = raw & np.uint64(0xFF), (raw >> np.uint64(8)) & np.uint64(1)
    rabs = (raw >> np.uint64(9)) & np.uint64(0x000FFFFFFFFFFFFF)
    fast = rabs < ki[idx]
    assert 0.985 < fast.mean() < 0.995
    first_slow = int(np.argmin(fast))
    x = rabs[:first_slow].astype(np.float64) * wi[idx[:first_slow]]
    x = np.where(sign[:first_slow] == 1, -x, x)
    expected = np.random.Generator(np.random.PCG64(3)).standard_normal(first_slow)
    assert first_slow > 10
    assert np.array_equal(x.view(np.uint64), expected.view(np.uint64))


def test_the_import_check_rejects_wrong_tables():
    """A width off by one ulp in one layer, or a layer that accepts what numpy's rejects, fails
    the check that decides whether the inlined draws are used. (A threshold too low is not
    wrong: it only sends more draws to numpy's own function, which gives numpy's draw.)"""
    ki, wi = _noise._ziggurat_tables()
    assert _noise._ziggurat_check(ki, wi)
    wrong_wi = wi.copy()
    wrong_wi[100] = np.nextafter(wi[100], 1.0)
    assert not _noise._ziggurat_check(ki, wrong_wi)
    layer = 2 + int(np.argmin(ki[2:]))             # the layer numpy rejects most in
    wrong_ki = ki.copy()
    wrong_ki[layer] = np.uint64(1 << 52)           # accepts every draw
    assert not _noise._ziggurat_check(wrong_ki, wi)
    lower_ki = ki.copy()
    lower_ki[layer] = ki[layer] // np.uint64(2)
    assert _noise._ziggurat_check(lower_ki, wi)
    assert _noise._ziggurat_ok()   # the tables in use are put back
    with pytest.raises(ValueError, match="256 entries"):
        _noise._ziggurat_check(ki[:10], wi)
