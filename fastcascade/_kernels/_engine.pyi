"""Type stubs of the compiled engine (``_engine.pyx``): signatures of its def functions and its
public constants. Arrays are C-contiguous float64 (``double``) or int64 (``long long``)."""
from typing import Any, final

import numpy as np
import numpy.typing as npt

BUILD_FLAGS: dict[str, bool]
OPTIMIZER_CODES: dict[str, int]
SCHEDULE_CODES: dict[str, int]
SAMPLING_CODES: dict[str, int]
STOP_REASONS: dict[int, str]
REG_CODES: dict[str, int]
CONFIG_KEYS: tuple[str, ...]

def interrupt_install() -> None: ...
def interrupt_restore() -> None: ...
def _check_distinct(*generators: np.random.Generator) -> None: ...
def _select_simd(level_cap: int) -> int: ...
def _simd_level() -> int: ...
def clean_objective_gradient(op_table: npt.NDArray[np.int64], params: npt.NDArray[np.float64],
                             X: npt.NDArray[np.float64], Y: npt.NDArray[np.float64],
                             w: npt.NDArray[np.float64], reg_code: int, reg_scale: float,
                             grad: npt.NDArray[np.float64]) -> float: ...
@final
class RunState:
    t: int
    stop: int
    stop_iter: int
    n_ahead: int
    def __init__(self, op_table: npt.NDArray[np.int64], params: npt.NDArray[np.float64],
                 X: npt.NDArray[np.float64], Y: npt.NDArray[np.float64],
                 w: npt.NDArray[np.float64], config: dict[str, Any],
                 pert_int: npt.NDArray[np.int64], pert_real: npt.NDArray[np.float64],
                 pert_times: npt.NDArray[np.int64], generators: Any) -> None: ...
    def set_perturbations(self, pert_int: npt.NDArray[np.int64],
                          pert_real: npt.NDArray[np.float64],
                          pert_times: npt.NDArray[np.int64]) -> None: ...
    def set_step_size(self, step_size: float) -> None: ...
    def step_size_at(self, t: int) -> float: ...
    def set_histories(self, rec_base: int, h_objective: npt.NDArray[np.float64],
                      h_grad_norm: npt.NDArray[np.float64],
                      h_grad_error: npt.NDArray[np.float64],
                      h_step_size: npt.NDArray[np.float64],
                      h_forward_error: npt.NDArray[np.float64],
                      h_backward_error: npt.NDArray[np.float64],
                      h_weights: npt.NDArray[np.float64] | None = None) -> None: ...
    def advance(self, t_end: int) -> bool: ...
    def weights(self) -> npt.NDArray[np.float64]: ...
    def nonfinite(self) -> int: ...
    def close(self, w: npt.NDArray[np.float64] | None = None) -> None: ...

def run_one(op_table: npt.NDArray[np.int64], params: npt.NDArray[np.float64],
            X: npt.NDArray[np.float64], Y: npt.NDArray[np.float64], w: npt.NDArray[np.float64],
            config: dict[str, Any], pert_int: npt.NDArray[np.int64],
            pert_real: npt.NDArray[np.float64], pert_times: npt.NDArray[np.int64],
            data_gen: np.random.Generator, forward_gen: np.random.Generator,
            backward_gen: np.random.Generator, grad_gen: np.random.Generator,
            h_objective: npt.NDArray[np.float64], h_grad_norm: npt.NDArray[np.float64],
            h_grad_error: npt.NDArray[np.float64], h_step_size: npt.NDArray[np.float64],
            h_forward_error: npt.NDArray[np.float64], h_backward_error: npt.NDArray[np.float64],
            h_weights: npt.NDArray[np.float64] | None = None,
            h_nonfinite: npt.NDArray[np.int64] | None = None) -> tuple[int, int, bool]: ...
def batch_gradients(op_table: npt.NDArray[np.int64], params: npt.NDArray[np.float64],
                    X: npt.NDArray[np.float64], Y: npt.NDArray[np.float64],
                    w: npt.NDArray[np.float64], pert_int: npt.NDArray[np.int64],
                    pert_real: npt.NDArray[np.float64], pert_times: npt.NDArray[np.int64],
                    t: int, forward_gen: np.random.Generator, backward_gen: np.random.Generator,
                    g_perturbed: npt.NDArray[np.float64],
                    g_clean: npt.NDArray[np.float64]) -> None: ...
