"""Type stubs of the compiled perturbation kernels (``_noise.pyx``): signatures of its def
functions and its public constants. Arrays are C-contiguous float64 (``double``) or int64
(``long long``)."""
import numpy as np
import numpy.typing as npt

NOISE_CODES: dict[str, int]
FIRST_TRANSFORM: int
ROUNDING_CODES: dict[str, int]
MODE_CODES: dict[str, int]
GRANULARITY_CODES: dict[str, int]
TIMING_CODES: dict[str, int]
MAGNITUDE_CODES: dict[str, int]
INT_FIELDS: int
REAL_FIELDS: int

def _select_simd(level_cap: int) -> int: ...
def _simd_level() -> int: ...
def apply(irow: npt.NDArray[np.int64], rrow: npt.NDArray[np.float64],
          generator: np.random.Generator, z: npt.NDArray[np.float64], t: int = 0,
          times: npt.NDArray[np.int64] | None = None,
          source: npt.NDArray[np.float64] | None = None) -> bool: ...
