from numpy.random cimport bitgen_t

# Perturbation kinds. Additive kinds draw a value and add it; the perturbation library adds
# transforming kinds (quantisers, compressors, faults) that rewrite the value in place.
cdef enum NoiseKind:
    NOISE_UNIFORM = 1     # p[0] = low, p[1] = high
    NOISE_GAUSSIAN = 2    # p[0] = mean, p[1] = std

# How many independent draws one application makes on a B x d block.
cdef enum Granularity:
    GRAN_ELEMENT = 0      # B * d draws: one per sample and coordinate (default)
    GRAN_SAMPLE = 1       # B draws: one per sample, shared by its coordinates
    GRAN_STEP = 2         # d draws: one vector per step, shared by every sample of the batch

cdef enum TimingKind:
    TIMING_ALWAYS = 0
    TIMING_EVERY = 1      # fires at t = offset, offset + period, ...

# One perturbation: a row of the run's perturbation table.
ctypedef struct Perturbation:
    int op                # 1-based operator index
    int backward          # 0: delta_op after f_op; 1: eps_op on the message op sends to op - 1
    int kind
    int granularity
    int timing
    long long period
    long long offset
    double p[4]

# Widths of the perturbation table's integer and real rows.
cdef enum:
    PERT_INT_FIELDS = 7
    PERT_REAL_FIELDS = 4

cdef Perturbation perturbation_from_rows(const long long* irow, const double* rrow) noexcept nogil

cdef bint perturbation_active(const Perturbation* pert, long long t) noexcept nogil

# Perturb the B x d block z in place (scratch holds at least B * d doubles).
cdef void perturbation_apply(const Perturbation* pert, bitgen_t* bg, double* z,
                             Py_ssize_t B, Py_ssize_t d, double* scratch) noexcept nogil
