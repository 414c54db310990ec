"""Type stubs of the compiled perturbation kernels (``_noise.pyx``): signatures of its def
functions and its public constants. Arrays are C-contiguous float64 (``double``) or int64
(``long long``)."""
import enum
from typing import Any

import numpy as np
import numpy.typing as npt

class NoiseKind(enum.IntEnum):
    NOISE_UNIFORM = 1
    NOISE_GAUSSIAN = 2
    NOISE_LAPLACE = 3
    NOISE_STUDENT_T = 4
    NOISE_RADEMACHER = 5
    NOISE_CONSTANT = 6
    NOISE_PYTHON = 7
    NOISE_ROUND_FLOAT = 20
    NOISE_ROUND_FIXED = 21
    NOISE_TOPK = 22
    NOISE_RANDK = 23
    NOISE_SCALED_SIGN = 24
    NOISE_BITFLIP = 25

NOISE_CODES: dict[str, int]
FIRST_TRANSFORM: int
ROUNDING_CODES: dict[str, int]
MODE_CODES: dict[str, int]
GRANULARITY_CODES: dict[str, int]
TIMING_CODES: dict[str, int]
MAGNITUDE_CODES: dict[str, int]
INT_FIELDS: int
REAL_FIELDS: int
PERT_INT_COLUMNS: dict[str, int]
PERT_REAL_COLUMNS: dict[str, int]

def _select_simd(level_cap: int) -> int: ...
def _simd_level() -> int: ...
def _pcg64_ifma(allow: bool | None = ...) -> bool: ...
def apply(irow: npt.NDArray[np.int64], rrow: npt.NDArray[np.float64],
          generator: np.random.Generator, z: npt.NDArray[np.float64], t: int = 0,
          times: npt.NDArray[np.int64] | None = None,
          source: npt.NDArray[np.float64] | None = None) -> bool: ...
def _forget(token: int, ref: Any) -> None: ...
def register_python_noise(noise: Any, token: int | None = None) -> int: ...
def python_noise(token: int) -> Any: ...
def take_callback_errors() -> list[BaseException]: ...
def callback_stats(reset: bool = False) -> dict[int, tuple[int, float]]: ...
def _normal_fill(generator: np.random.Generator, n: int) -> npt.NDArray[np.float64]: ...
def _ziggurat_ok() -> bool: ...
def _ziggurat_tables() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]: ...
def _ziggurat_check(ki: npt.NDArray[np.uint64], wi: npt.NDArray[np.float64]) -> bool: ...
