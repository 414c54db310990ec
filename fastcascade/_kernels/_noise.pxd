from libc.stdint cimport uint32_t, uint64_t
from numpy.random cimport bitgen_t

# Perturbation kinds. Distributions (< NOISE_FIRST_TRANSFORM) draw values that are added to
# the block (or multiply it, in relative mode); transforms rewrite the block in place.
# Exported (cpdef) as the IntEnum _noise.NoiseKind, so that tests can enumerate every kind.
cpdef enum NoiseKind:
    NOISE_UNIFORM = 1          # p[0] = low, p[1] = high
    NOISE_GAUSSIAN = 2         # p[0] = mean, p[1] = std
    NOISE_LAPLACE = 3          # p[0] = loc, p[1] = scale
    NOISE_STUDENT_T = 4        # p[0] = df, p[1] = scale
    NOISE_RADEMACHER = 5       # p[0] = scale
    NOISE_CONSTANT = 6         # p[0] = value
    NOISE_PYTHON = 7           # a Python-defined fc.noise.Noise: z + m_t draw(gen, z), called
                               # back with the GIL on the run's generator; aux = its token
    NOISE_ROUND_FLOAT = 20     # aux = mantissa bits, aux2 = rounding; p[0] = emin, p[1] = max
                               # finite, p[2] = overflow (0: +-inf, 1: NaN)
    NOISE_ROUND_FIXED = 21     # aux2 = rounding; p[0] = grid step
    NOISE_TOPK = 22            # aux = k
    NOISE_RANDK = 23           # aux = k, aux2 = 1: unbiased (kept entries scaled by d / k)
    NOISE_SCALED_SIGN = 24
    NOISE_BITFLIP = 25         # aux = mask of the float64 bits that may flip; p[0] = probability

cdef enum:
    NOISE_FIRST_TRANSFORM = 20   # kinds from here on are transforms

cdef enum Rounding:
    ROUND_NEAREST_EVEN = 0
    ROUND_STOCHASTIC = 1

cdef enum Mode:
    MODE_ADDITIVE = 0          # z + m_t * draw
    MODE_RELATIVE = 1          # z * (1 + m_t * draw)

# How many independent draws one application of a distribution makes on a B x d block.
cdef enum Granularity:
    GRAN_ELEMENT = 0           # B * d draws: one per sample and coordinate (default)
    GRAN_SAMPLE = 1            # B draws: one per sample, shared by its coordinates
    GRAN_STEP = 2              # d draws: one vector per step, shared by the whole batch

cdef enum TimingKind:
    TIMING_ALWAYS = 0
    TIMING_EVERY = 1           # t = t_b, t_b + t_a, ...   (t_a = period, t_b = offset)
    TIMING_BERNOULLI = 2       # with probability prob, one uniform draw per step
    TIMING_AT = 3              # t in times[t_a:t_b] (sorted)
    TIMING_WINDOW = 4          # t_a <= t < t_b

cdef enum MagnitudeKind:
    MAG_CONSTANT = 0           # m_t = scale
    MAG_POWER = 1              # m_t = scale * (t + 1)^-alpha

ctypedef struct Perturbation:
    int op                     # 1-based operator index
    int backward               # 0: delta_op after f_op; 1: eps_op on the message op sends to op - 1
    int kind
    int granularity
    int timing
    int mode
    int magnitude
    long long t_a
    long long t_b
    long long aux
    long long aux2
    double p[4]
    double prob
    double scale
    double alpha
    const long long* times     # TIMING_AT: the run's shared iteration list

# The columns of the perturbation tables' integer and real rows, and their widths: the one
# definition, exported to Python as _noise.PERT_INT_COLUMNS / PERT_REAL_COLUMNS.
cdef enum:
    PCOL_OP = 0
    PCOL_BACKWARD = 1
    PCOL_KIND = 2
    PCOL_GRANULARITY = 3
    PCOL_TIMING = 4
    PCOL_T_A = 5
    PCOL_T_B = 6
    PCOL_MODE = 7
    PCOL_AUX = 8
    PCOL_AUX2 = 9
    PCOL_MAGNITUDE = 10
    PERT_INT_FIELDS = 11
cdef enum:
    RCOL_P0 = 0               # the noise's parameters p[0..3]
    RCOL_PROB = 4
    RCOL_SCALE = 5
    RCOL_ALPHA = 6
    PERT_REAL_FIELDS = 7

cdef Perturbation perturbation_from_rows(const long long* irow, const double* rrow,
                                         const long long* times) noexcept nogil

# Whether the perturbation strikes at iteration t (Bernoulli timing draws one uniform from bg).
cdef bint perturbation_active(const Perturbation* pert, long long t, bitgen_t* bg) noexcept nogil

# Perturb the B x d block z in place at iteration t (scratch holds at least B * d doubles).
cdef void perturbation_apply(const Perturbation* pert, bitgen_t* bg, double* z,
                             Py_ssize_t B, Py_ssize_t d, double* scratch,
                             long long t) noexcept nogil

# z = x perturbed (x unchanged): perturbation_apply on a copy of x, the same draws and bits.
cdef void perturbation_apply_to(const Perturbation* pert, bitgen_t* bg, const double* x,
                                double* z, Py_ssize_t B, Py_ssize_t d, double* scratch,
                                long long t) noexcept nogil

# ---- random streams: numpy's PCG64 inlined (_pcg64.h), bit for bit the same draws -------------

cdef extern from "_pcg64.h":
    ctypedef struct fc_pcg64_t:
        int has_uint32
        uint32_t uinteger

# One run's stream: a bitgen_t that the kernels draw from. For a numpy PCG64 generator it serves
# the inlined copy of the generator's state; for any other bit generator, the generator's own.
ctypedef struct Stream:
    bitgen_t own               # serves pcg (fast is True)
    fc_pcg64_t pcg
    bitgen_t* bitgen           # what to draw from: &own, or the generator's bitgen_t
    bint fast

# Open a stream on the numpy Generator (with the GIL; the generator must not be used until
# stream_close, which writes the state back so that the generator continues where it stopped).
cdef bitgen_t* stream_open(Stream* st, generator) except NULL
cdef int stream_close(Stream* st, generator) except -1

# n standard uniform doubles in [0, 1) (numpy's random_standard_uniform_fill).
cdef void uniform_fill(bitgen_t* bg, Py_ssize_t n, double* out) noexcept nogil

# n standard normals (numpy's random_standard_normal_fill, the same draws; _ziggurat.h).
cdef void normal_fill(bitgen_t* bg, Py_ssize_t n, double* out) noexcept nogil
