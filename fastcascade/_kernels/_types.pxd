# Shared enums and ctypedefs: the contract between the Python plan and every kernel.
# Python reads the operator codes from fastcascade._kernels._ops.OP_CODES; the enum itself is
# exported (cpdef) by the module fastcascade._kernels._types as the IntEnum ``OpCode``, so that
# tests can enumerate every code (tests/test_registry.py: each needs a NumPy twin and a case).

cpdef enum OpCode:
    OP_IDENTITY = 0
    OP_MARGIN = 1
    OP_SOFTPLUS = 2
    OP_LINEAR = 3
    OP_SIGMOID = 4
    OP_TANH = 5
    OP_RELU = 6
    OP_LOGISTIC_LOSS = 7
    OP_SQUARED_ERROR = 8
    OP_SOFTMAX_XENT = 9
    OP_FIXED_LINEAR = 10
    OP_DIAG_LINEAR = 11
    OP_INNER_SQUARE = 12
    OP_LQ_STEP = 13           # [x; c] -> [(A + B K) x; c + x'Qx + u'Ru], u = K x; flag = m
    OP_LQ_TERMINAL = 14       # [x; c] -> c + x'Qf x
    OP_PYTHON = 15            # a Python-defined operator (fc.ops.Operator subclass), called
                              # back with the GIL; flag = its token in _ops' registry
    OP_COMPILED = 16          # a user's compiled operator (fastcascade/extension.pxd), called
                              # without the GIL; flag = its slot in _ops' table

# The columns of a row of the plan's operator table (an int64 array of shape
# (N, OP_TABLE_WIDTH)): the one definition, exported to Python as _ops.OP_COLUMNS.
cdef enum:
    OPCOL_CODE = 0
    OPCOL_FLAG = 1
    OPCOL_D_IN = 2
    OPCOL_D_OUT = 3
    OPCOL_N_W = 4
    OPCOL_W_OFF = 5
    OPCOL_P_OFF = 6
    OP_TABLE_WIDTH = 7

# One row of the plan's operator table, read by opdesc_from_row.
ctypedef struct OpDesc:
    int code
    int flag              # OP_LINEAR: 1 if it has a bias
    Py_ssize_t d_in
    Py_ssize_t d_out
    Py_ssize_t n_w        # number of trainable weights of this operator
    Py_ssize_t w_off      # offset of its weights in the flat weight vector
    Py_ssize_t p_off      # offset of its fixed parameters in the plan's parameter array
