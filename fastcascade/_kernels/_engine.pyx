# cython: language_level=3
"""The perturbed SGD engine (Eq. 5, docs/model.md sec. 2): the whole T-iteration loop in one
nogil call.

One step at iteration t (per-sample semantics on a batch of B samples):

    forward   ~y_i     = f_i(~y_{i-1}, w_i) + delta_i        i = 1..N
    backward  ~v_{i-1} = J1_i(~y_{i-1}, w_i)^T ~v_i + eps_i   i = N..2   (~v_N = 1)
    gradient  ~u_i     = mean_s J2_i(~y_{i-1}, w_i)^T ~v_i   i = N..1
    step      g = ~u + grad R(w) + sigma_n xi;  optional clipping; optimizer update.

Random streams (one bitgen_t each, owned by the run): data sampling, forward noise, backward
noise, gradient noise. The NumPy twin is ``fastcascade.reference_engine``.
"""
from libc.math cimport sqrt, pow, floor, isfinite, fabs
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_normal_fill, random_interval

cdef extern from "numpy/random/distributions.h":
    # what Generator.integers(off, off + rng + 1, size=cnt) uses for int64 (Lemire's method)
    void random_bounded_uint64_fill(bitgen_t* bitgen_state, uint64_t off, uint64_t rng,
                                    Py_ssize_t cnt, bint use_masked, uint64_t* out) nogil

import numpy as np

from fastcascade._kernels._types cimport (
    OpDesc, OP_IDENTITY, OP_MARGIN, OP_SOFTPLUS, OP_LINEAR, OP_RELU, OP_LOGISTIC_LOSS,
    OP_SQUARED_ERROR, OP_SOFTMAX_XENT, OP_FIXED_LINEAR, OP_DIAG_LINEAR, OP_INNER_SQUARE)
from fastcascade._kernels._ops cimport (
    op_forward, op_forward_with_derivative, op_vjp_set, opdesc_from_row, op_wgrad_deferrable,
    op_vjp_deferred, op_sgd_step_deferred)
from fastcascade._kernels._fastmath cimport (
    fc_fastmath_init, fc_fastmath_select, fc_fastmath_level, fc_sum, fc_sumsq, fc_axpy_exact,
    fc_axpy_exact_sumsq)
from fastcascade._kernels._noise cimport (
    Perturbation, perturbation_from_rows, perturbation_active, perturbation_apply,
    perturbation_apply_to,
    PERT_INT_FIELDS, PERT_REAL_FIELDS, TIMING_AT, Stream, stream_open,
    stream_close, fc_pcg64_t)

cdef enum:  # regularizer codes, as in fastcascade.reg
    REG_NONE = 0
    REG_L2 = 1            # scale * ||w||^2
    REG_NONCONVEX = 2     # scale * sum w^2 / (1 + w^2)

cdef enum:
    OPT_SGD = 0           # heavy-ball momentum and Nesterov as options
    OPT_ADAM = 1

cdef enum:
    SCHED_CONSTANT = 0
    SCHED_INVERSE_POWER = 1   # g0 / (1 + t)^power
    SCHED_STEP_DECAY = 2      # g0 * factor^floor(t / every)

cdef enum:
    SAMPLE_FULL = 0
    SAMPLE_REPLACEMENT = 1
    SAMPLE_SHUFFLE = 2

cdef enum:
    STOP_NONE = 0
    STOP_NONFINITE_GRADIENT = 1
    STOP_GRADIENT_NORM = 2
    STOP_NONFINITE_WEIGHTS = 3
    STOP_WEIGHT_NORM = 4
    STOP_NONFINITE_OBJECTIVE = 5

cdef extern from *:
    """
    #ifndef FASTCASCADE_BUILD_DEBUG
    #define FASTCASCADE_BUILD_DEBUG 0
    #endif
    #ifndef FASTCASCADE_BUILD_NATIVE
    #define FASTCASCADE_BUILD_NATIVE 0
    #endif
    """
    int FASTCASCADE_BUILD_DEBUG
    int FASTCASCADE_BUILD_NATIVE

cdef extern from *:
    """
    /* ask for the cache lines of x[0 .. n) ahead of their use (a hint: no effect on results) */
    static inline void fc_prefetch(const double* x, Py_ssize_t n) {
    #if defined(__GNUC__)
        for (Py_ssize_t k = 0; k < n; k += 8) __builtin_prefetch(x + k);
        if (n > 0) __builtin_prefetch(x + n - 1);
    #else
        (void)x; (void)n;
    #endif
    }
    """
    void fc_prefetch(const double* x, Py_ssize_t n) noexcept nogil

cdef extern from "_worker.h":
    ctypedef void (*fc_job_fn)(void*) noexcept nogil
    ctypedef struct fc_worker:
        pass
    fc_worker* fc_worker_start(fc_job_fn fn, void* ctx) noexcept nogil
    void fc_worker_post(fc_worker* w) noexcept nogil
    void fc_worker_wait(fc_worker* w) noexcept nogil
    void fc_worker_stop(fc_worker* w) noexcept nogil

# How this extension was built (setup.py's switches), for `fastcascade info`.
BUILD_FLAGS = {"debug": bool(FASTCASCADE_BUILD_DEBUG), "native": bool(FASTCASCADE_BUILD_NATIVE)}

# For the Python side.
OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}
SCHEDULE_CODES = {"constant": SCHED_CONSTANT, "inverse_power": SCHED_INVERSE_POWER,
                  "step_decay": SCHED_STEP_DECAY}
SAMPLING_CODES = {"full": SAMPLE_FULL, "replacement": SAMPLE_REPLACEMENT,
                  "shuffle": SAMPLE_SHUFFLE}
STOP_REASONS = {
    STOP_NONE: "",
    STOP_NONFINITE_GRADIENT: "non-finite gradient",
    STOP_GRADIENT_NORM: "gradient norm above max_norm",
    STOP_NONFINITE_WEIGHTS: "non-finite weights",
    STOP_WEIGHT_NORM: "weight norm above max_norm",
    STOP_NONFINITE_OBJECTIVE: "non-finite objective",
}


ctypedef struct Net:
    Py_ssize_t N
    OpDesc* ops            # N operators
    const double* params
    Py_ssize_t* dims       # d_0 .. d_N
    Py_ssize_t max_width
    Py_ssize_t n_w


ctypedef struct Pass:
    # Buffers of one forward/backward pass over B samples; index i = 0..N (layer widths d_i).
    Py_ssize_t B
    double** a             # a[i]: f_i's output before its perturbation (i >= 1)
    double** y             # y[i]: what flows on: a[i], or ybuf[i] when perturbed; y[0] = input
    double** ybuf          # ybuf[i]: a[i] + delta_i
    double** v             # v[i]: the message into operator i's output (v[N] = 1)
    double* block
    long long n_nonfinite  # perturbed sites whose values came out non-finite (all steps)


ctypedef struct Config:
    long long n_iter
    int sampling
    Py_ssize_t batch
    double grad_noise_std
    int optimizer
    double momentum
    int nesterov
    double beta1
    double beta2
    double adam_eps
    double clip_norm          # <= 0: no clipping
    int schedule
    double step_size
    double power
    double factor
    long long every
    int reg_code
    double reg_scale
    long long record_every
    int record_profile
    int record_weights
    int record_thread         # record on a helper thread, concurrently with the steps
    double max_norm


ctypedef struct Sites:
    # Perturbations sorted by site; site k = i (forward at op i) or N + i (backward at op i).
    Perturbation* perts
    Py_ssize_t* start
    Py_ssize_t* end


ctypedef struct Recorder:
    # One record of the histories at w_t, before the update (record_step): what it reads, where
    # it writes. Run by the run's own thread, or by its helper thread concurrently with the next
    # steps (then w, g, pert and the samples are the helper's until the job is done).
    const Net* net
    Py_ssize_t n_fwd             # the operators the perturbed forward pass ran
    const Config* cfg
    bint full_batch
    Pass* full                   # the clean pass over all samples
    Pass* cleanb                 # the clean pass over the step's samples (minibatches)
    const double* X
    const double* Y
    Py_ssize_t ldl
    double* fullgrad
    double* ubar
    double* h_objective          # the histories: one entry (or row) per record
    double* h_grad_norm
    double* h_grad_error
    double* h_step_size
    double* h_forward_error      # n_rec x N, when cfg.record_profile
    double* h_backward_error
    double* h_weights            # n_rec x n_w, when cfg.record_weights
    # the step to record
    long long t
    Py_ssize_t rec
    double lr
    const double* w              # w_t
    const double* g              # the step's perturbed data gradient (batch mean)
    const Pass* pert             # the step's perturbed pass
    const double* xin            # the step's samples
    const double* labin
    # the outcome: the clean objective was not finite (the run stops at t)
    bint stop


# ---------------------------------------------------------------------------------------------
# Setup and teardown (with the GIL)

cdef int net_init(Net* net, const long long[:, ::1] table, const double[::1] params) except -1:
    cdef Py_ssize_t i, N = table.shape[0]
    if table.shape[1] != 7 or N < 1:
        raise ValueError(f"op_table: expected (N >= 1, 7), given ({N}, {table.shape[1]})")
    net.N = N
    net.ops = <OpDesc*>malloc(N * sizeof(OpDesc))
    net.dims = <Py_ssize_t*>malloc((N + 1) * sizeof(Py_ssize_t))
    if net.ops == NULL or net.dims == NULL:
        net_free(net)
        raise MemoryError()
    net.params = &params[0] if params.shape[0] > 0 else NULL
    net.n_w = 0
    for i in range(N):
        net.ops[i] = opdesc_from_row(&table[i, 0])
        if net.ops[i].w_off != net.n_w:
            # backward_pass lets each operator write its own block of the gradient
            net_free(net)
            raise ValueError("op_table: the operators' weight blocks must tile the weight vector")
        net.n_w += net.ops[i].n_w
    net.dims[0] = net.ops[0].d_in
    net.max_width = net.dims[0]
    for i in range(N):
        net.dims[i + 1] = net.ops[i].d_out
        if net.dims[i + 1] > net.max_width:
            net.max_width = net.dims[i + 1]
    return 0


cdef void net_free(Net* net) noexcept:
    free(net.ops)
    free(net.dims)
    net.ops = NULL
    net.dims = NULL


cdef int pass_init(Pass* ps, const Net* net, Py_ssize_t B) except -1:
    cdef Py_ssize_t i, total = 0, off = 0, n = net.N + 1
    for i in range(1, n):
        total += 3 * B * net.dims[i]
    ps.B = B
    ps.n_nonfinite = 0
    ps.a = <double**>calloc(n, sizeof(double*))
    ps.y = <double**>calloc(n, sizeof(double*))
    ps.ybuf = <double**>calloc(n, sizeof(double*))
    ps.v = <double**>calloc(n, sizeof(double*))
    ps.block = <double*>calloc(total if total > 0 else 1, sizeof(double))
    if ps.a == NULL or ps.y == NULL or ps.ybuf == NULL or ps.v == NULL or ps.block == NULL:
        pass_free(ps)
        raise MemoryError()
    for i in range(1, n):
        ps.a[i] = ps.block + off
        off += B * net.dims[i]
        ps.ybuf[i] = ps.block + off
        off += B * net.dims[i]
        ps.v[i] = ps.block + off
        off += B * net.dims[i]
    # the backward pass starts from v_N = dF/dy_N = 1; nothing writes v[N] (perturbations of the
    # backward pass act on the messages v[i - 1] that operators i >= 2 send)
    for i in range(B * net.dims[net.N]):
        ps.v[net.N][i] = 1.0
    return 0


cdef void pass_free(Pass* ps) noexcept:
    free(ps.a)
    free(ps.y)
    free(ps.ybuf)
    free(ps.v)
    free(ps.block)
    ps.a = ps.y = ps.ybuf = ps.v = NULL
    ps.block = NULL


cdef int sites_init(Sites* sites, Py_ssize_t N, const long long[:, ::1] pint,
                    const double[:, ::1] preal, const long long[::1] times) except -1:
    # Rows must come sorted by site (the Python side sorts them, keeping the user's order).
    cdef Py_ssize_t k, site, P = pint.shape[0], n_sites = 2 * N + 2
    if pint.shape[1] != PERT_INT_FIELDS or preal.shape[1] != PERT_REAL_FIELDS \
            or preal.shape[0] != P:
        raise ValueError("perturbation tables have the wrong shape")
    sites.perts = <Perturbation*>malloc((P if P > 0 else 1) * sizeof(Perturbation))
    sites.start = <Py_ssize_t*>calloc(n_sites, sizeof(Py_ssize_t))
    sites.end = <Py_ssize_t*>calloc(n_sites, sizeof(Py_ssize_t))
    if sites.perts == NULL or sites.start == NULL or sites.end == NULL:
        sites_free(sites)
        raise MemoryError()
    cdef const long long* tp = &times[0] if times.shape[0] > 0 else NULL
    for k in range(P):
        if pint[k, 4] == TIMING_AT and (pint[k, 5] < 0 or pint[k, 5] > pint[k, 6]
                                         or pint[k, 6] > times.shape[0]):
            sites_free(sites)
            raise ValueError("an At() perturbation row does not index into the times array")
        sites.perts[k] = perturbation_from_rows(&pint[k, 0], &preal[k, 0], tp)
        site = sites.perts[k].op + (N if sites.perts[k].backward else 0)
        if site < 1 or site >= n_sites or (k > 0 and site < _site(&sites.perts[k - 1], N)):
            sites_free(sites)
            raise ValueError("perturbation rows must be sorted by site and name a valid operator")
        if sites.end[site] == 0:
            sites.start[site] = k
        sites.end[site] = k + 1
    return 0


cdef inline Py_ssize_t _site(const Perturbation* p, Py_ssize_t N) noexcept nogil:
    return p.op + (N if p.backward else 0)


cdef void sites_free(Sites* sites) noexcept:
    free(sites.perts)
    free(sites.start)
    free(sites.end)
    sites.perts = NULL
    sites.start = sites.end = NULL


def _check_distinct(*generators):
    # each stream is copied into the run and written back at the end: one bit generator passed
    # twice (or behind two Generators) would hand out the same draws twice
    if len({id(g.bit_generator) for g in generators}) != len(generators):
        raise ValueError("the random streams must be distinct generators (distinct bit "
                         "generators)")


cdef int close_streams(Stream** streams, generators) except -1:
    # stream_close on each (all of them, even when one fails; the first error is raised)
    cdef Py_ssize_t k
    error = None
    for k in range(len(generators)):
        try:
            stream_close(streams[k], generators[k])
        except BaseException as e:
            error = e if error is None else error
    if error is not None:
        raise error
    return 0


# ---------------------------------------------------------------------------------------------
# The passes (nogil)

cdef bint any_nonfinite(const double* z, Py_ssize_t n) noexcept nogil:
    # an exponent of all ones is inf or NaN; integer ORs, which the compiler vectorises
    cdef const uint64_t* u = <const uint64_t*>z
    cdef uint64_t bad = 0
    cdef Py_ssize_t j
    for j in range(n):
        bad = bad | ((u[j] & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL)
    return bad != 0


cdef void forward_pass(const Net* net, const double* w, Pass* ps, const double* x,
                       const double* lab, Py_ssize_t ldl, const Sites* sites, long long t,
                       bitgen_t* bg, double* scratch) noexcept nogil:
    # ~y_i = f_i(~y_{i-1}, w_i) + delta_i (Eq. 5, forward); sites == NULL: the clean pass.
    cdef Py_ssize_t i, k, B = ps.B
    cdef const OpDesc* op
    ps.y[0] = <double*>x
    for i in range(1, net.N + 1):
        op = &net.ops[i - 1]
        op_forward(op, w + op.w_off, net.params + op.p_off, ps.y[i - 1], ps.a[i], lab, ldl, B)
        ps.y[i] = ps.a[i]
        if sites == NULL:
            continue
        for k in range(sites.start[i], sites.end[i]):
            if not perturbation_active(&sites.perts[k], t, bg):
                continue
            if ps.y[i] == ps.a[i]:   # the first to strike: ~y_i in ybuf, f_i's output kept
                perturbation_apply_to(&sites.perts[k], bg, ps.a[i], ps.ybuf[i], B,
                                      net.dims[i], scratch, t)
                ps.y[i] = ps.ybuf[i]
            else:
                perturbation_apply(&sites.perts[k], bg, ps.y[i], B, net.dims[i], scratch, t)
        if ps.y[i] != ps.a[i] and any_nonfinite(ps.y[i], B * net.dims[i]):
            ps.n_nonfinite += 1


cdef void backward_pass(const Net* net, const double* w, Pass* ps, const double* lab,
                        Py_ssize_t ldl, const Sites* sites, long long t, bitgen_t* bg,
                        double* scratch, double* gsum, bint last_vjp_done) noexcept nogil:
    # ~v_{i-1} = J1_i(~y_{i-1})^T ~v_i + eps_i;  gsum = sum_s J2_i(~y_{i-1})^T ~v_i  (Eq. 5),
    # from v_N = 1 (set by pass_init). last_vjp_done: v[N - 1] already holds f_N's VJP
    # (clean_eval_shared computed it with f_N's value; f_N has no weights).
    backward_pass_sumsq(net, w, ps, lab, ldl, sites, t, bg, scratch, gsum, NULL, False,
                        last_vjp_done)


cdef void backward_pass_sumsq(const Net* net, const double* w, Pass* ps, const double* lab,
                              Py_ssize_t ldl, const Sites* sites, long long t, bitgen_t* bg,
                              double* scratch, double* gsum, double* gsumsq,
                              bint defer, bint last_vjp_done) noexcept nogil:
    # backward_pass; also, when gsumsq is not NULL, gsumsq[0] = sum_j gsum_j^2 (the operators'
    # blocks summed in the order N..1, each computed by its kernel while it writes the block).
    # The operators' weight blocks tile gsum (net_init checks it), so each operator writes its
    # own block (op_vjp_set) and gsum needs no zeroing pass first.
    # defer (with gsumsq): the blocks of deferrable operators (op_wgrad_deferrable) are left
    # unwritten, for sgd_step(..., deferred=True) or write_deferred_blocks.
    # last_vjp_done: as in backward_pass.
    cdef Py_ssize_t i, k, j, B = ps.B, N = net.N
    cdef bint struck
    cdef const OpDesc* op
    cdef double block_sumsq
    if gsumsq != NULL:
        gsumsq[0] = 0.0
    for i in range(N, 0, -1):
        op = &net.ops[i - 1]
        if i == N and last_vjp_done:
            block_sumsq = 0.0
        elif defer and op_wgrad_deferrable(op, B):
            op_vjp_deferred(op, w + op.w_off, net.params + op.p_off, ps.y[i - 1], ps.v[i],
                            ps.v[i - 1] if i >= 2 else NULL, &block_sumsq)
        else:
            op_vjp_set(op, w + op.w_off, net.params + op.p_off, ps.y[i - 1], ps.a[i], ps.v[i],
                       lab, ldl, B, ps.v[i - 1] if i >= 2 else NULL,
                       gsum + op.w_off if op.n_w > 0 else NULL,
                       &block_sumsq if gsumsq != NULL and op.n_w > 0 else NULL)
        if gsumsq != NULL and op.n_w > 0:
            gsumsq[0] = gsumsq[0] + block_sumsq
        if sites == NULL or i < 2:
            continue
        struck = False
        for k in range(sites.start[N + i], sites.end[N + i]):
            if perturbation_active(&sites.perts[k], t, bg):
                perturbation_apply(&sites.perts[k], bg, ps.v[i - 1], B, net.dims[i - 1], scratch,
                                   t)
                struck = True
        if struck and any_nonfinite(ps.v[i - 1], B * net.dims[i - 1]):
            ps.n_nonfinite += 1


cdef void write_deferred_blocks(const Net* net, const double* w, const Pass* ps,
                               double* gsum) noexcept nogil:
    # the gsum blocks backward_pass_sumsq(..., defer=True) left unwritten, from the pass's
    # factors (the same bits as writing them there; no random draws)
    cdef Py_ssize_t i
    cdef const OpDesc* op
    for i in range(1, net.N + 1):
        op = &net.ops[i - 1]
        if op_wgrad_deferrable(op, ps.B):
            op_vjp_set(op, w + op.w_off, net.params + op.p_off, ps.y[i - 1], ps.a[i], ps.v[i],
                       NULL, 0, ps.B, NULL, gsum + op.w_off, NULL)


cdef double sgd_step(const Net* net, const Pass* ps, double* w, const double* g, double a,
                     bint deferred) noexcept nogil:
    # w += a g with fc_axpy_exact's roundings; returns ||w||^2 of the new w. deferred: g's
    # deferred blocks (backward_pass_sumsq(..., defer=True)) are applied from the pass's factors
    # (op_sgd_step_deferred: the same bits for w), block by block (another summation order)
    cdef Py_ssize_t i
    cdef const OpDesc* op
    cdef double acc = 0.0
    if not deferred:
        return fc_axpy_exact_sumsq(a, g, w, net.n_w)
    for i in range(1, net.N + 1):
        op = &net.ops[i - 1]
        if op.n_w == 0:
            continue
        if op_wgrad_deferrable(op, ps.B):
            acc = acc + op_sgd_step_deferred(op, w + op.w_off, ps.y[i - 1], ps.v[i], a)
        else:
            acc = acc + fc_axpy_exact_sumsq(a, g + op.w_off, w + op.w_off, op.n_w)
    return acc


cdef double reg_value(int code, double scale, const double* w, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef double acc = 0.0, w2
    if code == REG_L2:
        for j in range(n):
            acc = acc + w[j] * w[j]
    elif code == REG_NONCONVEX:
        for j in range(n):
            w2 = w[j] * w[j]
            acc = acc + w2 / (1.0 + w2)
    return scale * acc


cdef void reg_grad_add(int code, double scale, const double* w, double* g,
                       Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef double q
    if code == REG_L2:
        # R = scale ||w||^2  (g[j] + (2 scale) w[j], vectorised, same roundings)
        fc_axpy_exact(2.0 * scale, w, g, n)
    elif code == REG_NONCONVEX:
        # R = scale sum w^2 / (1 + w^2): dR/dw = scale * 2 w / (1 + w^2)^2
        for j in range(n):
            q = 1.0 + w[j] * w[j]
            g[j] = g[j] + scale * 2.0 * w[j] / (q * q)


cdef double clean_data_eval(const Net* net, const double* w, Pass* ps, const double* X,
                            const double* Y, Py_ssize_t ldl, double* grad) noexcept nogil:
    # The clean mean loss (1/B) sum_s F(x_s; w) on the pass's samples; its gradient into grad.
    # (clean_eval_shared with nothing to share: the same kernels, so the same bits.)
    return clean_eval_shared(net, 0, w, ps, NULL, X, Y, ldl, grad)


cdef inline double norm2(const double* x, Py_ssize_t n) noexcept nogil:
    # sum of squares in _fastmath's fixed vector order (a sequential sum does not vectorise)
    return fc_sumsq(x, n)


fc_fastmath_init()


def _select_simd(int level_cap):
    """Select this module's vector variant, the best at or below level_cap (3: AVX-512,
    2: AVX2+FMA, 1: baseline); returns the level in use. Each extension module has its own
    dispatch table: _ops.set_simd_level switches this one too."""
    return fc_fastmath_select(level_cap)


def _simd_level():
    """The level of this module's vector variant (3: AVX-512, 2: AVX2+FMA, 1: baseline,
    0: scalar)."""
    return fc_fastmath_level()


cdef inline bint vjp_ignores_output(int code) noexcept nogil:
    # operators whose op_vjp never reads `out` (a list of known ones, so that an operator added
    # later is assumed to read it until it is listed here)
    return code in (OP_IDENTITY, OP_MARGIN, OP_SOFTPLUS, OP_LINEAR, OP_RELU, OP_LOGISTIC_LOSS,
                    OP_SQUARED_ERROR, OP_SOFTMAX_XENT, OP_FIXED_LINEAR, OP_DIAG_LINEAR,
                    OP_INNER_SQUARE)


# ---- speed: the recording pass shares what the perturbed pass already computed ---------------

cdef double clean_eval_shared(const Net* net, Py_ssize_t n_fwd, const double* w, Pass* clean,
                              const Pass* pert, const double* x, const double* lab,
                              Py_ssize_t ldl, double* grad) noexcept nogil:
    # The clean mean loss on the samples x and its gradient (into grad). With pert, the perturbed
    # pass on the same samples, its forward outputs a[i] are reused (i <= n_fwd, the operators
    # it ran) for every operator whose input was not perturbed
    # (pert.y[k] == pert.a[k] for all 1 <= k < i): they are the clean outputs, computed by the
    # same kernel on the same input, so the results are bit-identical to a fresh clean pass.
    # Returns the batch-mean loss; grad = its gradient. Afterwards clean.y[i] points at the
    # clean values (possibly pert.a[i]) until the next pass.
    cdef Py_ssize_t i, j, B = clean.B, N = net.N, shared = 0
    cdef const OpDesc* op
    cdef double obj = 0.0
    cdef double* saved_a[64]
    cdef bint last_vjp_done = False
    while shared < n_fwd and shared < 64 and (shared == 0 or pert.y[shared] == pert.a[shared]):
        shared += 1
    # operators 1..shared: borrow the perturbed pass's outputs (restored below)
    clean.y[0] = <double*>x
    for i in range(1, shared + 1):
        saved_a[i - 1] = clean.a[i]
        clean.a[i] = pert.a[i]
        clean.y[i] = pert.a[i]
    for i in range(shared + 1, N + 1):
        op = &net.ops[i - 1]
        # the last operator's value and, where it has one, its elementwise derivative in one
        # pass; with v_N = 1 the derivative is the message f_N sends back: v_{N-1} = f_N'(y_{N-1})
        if i == N and N >= 2 and op_forward_with_derivative(op, clean.y[i - 1], clean.a[i],
                                                            clean.v[i - 1], B):
            last_vjp_done = True
        else:
            op_forward(op, w + op.w_off, net.params + op.p_off, clean.y[i - 1], clean.a[i], lab,
                       ldl, B)
        clean.y[i] = clean.a[i]
    obj = fc_sum(clean.a[N], B)
    backward_pass(net, w, clean, lab, ldl, NULL, 0, NULL, NULL, grad, last_vjp_done)
    for i in range(1, shared + 1):
        clean.a[i] = saved_a[i - 1]
    for j in range(net.n_w):
        grad[j] = grad[j] / B
    return obj / B


cdef double safe_norm(const double* x, Py_ssize_t n) noexcept nogil:
    # ||x||, without overflow for finite entries up to DBL_MAX (the sum of squares overflows
    # from about 1.3e154): rescale by max |x_j| only when the plain sum is not finite.
    return safe_norm_of(norm2(x, n), x, n)


cdef double safe_norm_of(double acc, const double* x, Py_ssize_t n) noexcept nogil:
    # safe_norm(x), given acc = sum_j x_j^2 (in any fixed order), e.g. from a fused pass
    cdef double m = 0.0, r
    cdef Py_ssize_t j
    if isfinite(acc):
        return sqrt(acc)
    for j in range(n):
        if not isfinite(x[j]):
            return x[j] - x[j]  # NaN: a non-finite entry
        if fabs(x[j]) > m:
            m = fabs(x[j])
    acc = 0.0
    for j in range(n):
        r = x[j] / m
        acc = acc + r * r
    return m * sqrt(acc)


cdef inline double dist2(const double* x, const double* y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef double acc = 0.0, d
    for j in range(n):
        d = x[j] - y[j]
        acc = acc + d * d
    return acc


cdef void record_step(Recorder* r) noexcept nogil:
    # The histories' entries at r.rec: the clean objective and gradient norm at w_t, the step
    # size, the gradient error, and (optionally) the error profile and the weights.
    cdef const Net* net = r.net
    cdef const Config* cfg = r.cfg
    cdef Py_ssize_t i, n_w = net.n_w, N = net.N, B = r.pert.B, rec = r.rec
    cdef Pass* clean = r.full if r.full_batch else r.cleanb
    cdef double obj
    if r.full_batch:
        obj = clean_eval_shared(net, r.n_fwd, r.w, r.full, r.pert, r.X, r.Y, r.ldl, r.fullgrad)
        # the clean gradient on the step's samples is the full-data one
        memcpy(r.ubar, r.fullgrad, n_w * sizeof(double))
    else:
        obj = clean_data_eval(net, r.w, r.full, r.X, r.Y, r.ldl, r.fullgrad)
    obj = obj + reg_value(cfg.reg_code, cfg.reg_scale, r.w, n_w)
    reg_grad_add(cfg.reg_code, cfg.reg_scale, r.w, r.fullgrad, n_w)
    r.h_objective[rec] = obj
    r.h_grad_norm[rec] = safe_norm(r.fullgrad, n_w)
    r.h_step_size[rec] = r.lr
    if not r.full_batch:
        clean_eval_shared(net, r.n_fwd, r.w, r.cleanb, r.pert, r.xin, r.labin, r.ldl, r.ubar)
    r.h_grad_error[rec] = dist2(r.g, r.ubar, n_w)
    if cfg.record_profile:
        # column i - 1 is site i as Perturbation.op counts it: forward at f_i's output y_i,
        # backward at the message v_{i-1} that f_i sends back (f_1 sends none: 0)
        r.h_backward_error[rec * N] = 0.0
        for i in range(1, N + 1):
            r.h_forward_error[rec * N + i - 1] = \
                dist2(r.pert.y[i], clean.y[i], B * net.dims[i]) / B
            if i >= 2:
                r.h_backward_error[rec * N + i - 1] = \
                    dist2(r.pert.v[i - 1], clean.v[i - 1], B * net.dims[i - 1]) / B
    if cfg.record_weights and n_w > 0:
        memcpy(r.h_weights + rec * n_w, r.w, n_w * sizeof(double))
    r.stop = not isfinite(obj)


cdef void record_job(void* ctx) noexcept nogil:
    # the helper thread's job (fc_worker)
    record_step(<Recorder*>ctx)


cdef double step_size_at(const Config* cfg, long long t) noexcept nogil:
    if cfg.schedule == SCHED_INVERSE_POWER:
        return cfg.step_size / pow(1.0 + t, cfg.power)
    if cfg.schedule == SCHED_STEP_DECAY:
        return cfg.step_size * pow(cfg.factor, floor(<double>t / <double>cfg.every))
    return cfg.step_size


cdef void shuffle(bitgen_t* bg, Py_ssize_t* perm, Py_ssize_t M) noexcept nogil:
    # numpy's Generator.permutation(M): arange, then Fisher-Yates from the end
    cdef Py_ssize_t i, j, tmp
    for i in range(M):
        perm[i] = i
    for i in range(M - 1, 0, -1):
        j = <Py_ssize_t>random_interval(bg, <uint64_t>i)
        tmp = perm[i]
        perm[i] = perm[j]
        perm[j] = tmp


# ---------------------------------------------------------------------------------------------
# Python entry points

def clean_objective_gradient(const long long[:, ::1] op_table, const double[::1] params,
                             const double[:, ::1] X, const double[:, ::1] Y,
                             const double[::1] w, int reg_code, double reg_scale,
                             double[::1] grad):
    """l(w) over all samples of X; writes grad l(w) into ``grad``."""
    cdef Net net
    cdef Pass ps
    cdef double obj
    cdef const double* wp
    cdef double* gp
    cdef Py_ssize_t ldl = Y.shape[1]
    cdef const double* lab = &Y[0, 0] if ldl > 0 else NULL
    net_init(&net, op_table, params)
    try:
        if X.shape[1] != net.dims[0] or w.shape[0] != net.n_w or grad.shape[0] != net.n_w:
            raise ValueError("clean_objective_gradient: shapes do not match the plan")
        pass_init(&ps, &net, X.shape[0])
        try:
            wp = &w[0] if net.n_w > 0 else NULL
            gp = &grad[0] if net.n_w > 0 else NULL
            with nogil:
                obj = clean_data_eval(&net, wp, &ps, &X[0, 0], lab, ldl, gp)
                obj = obj + reg_value(reg_code, reg_scale, wp, net.n_w)
                reg_grad_add(reg_code, reg_scale, wp, gp, net.n_w)
        finally:
            pass_free(&ps)
    finally:
        net_free(&net)
    return obj


cdef Config config_from(dict c) except *:
    cdef Config cfg
    cfg.n_iter = c["n_iter"]
    cfg.sampling = SAMPLING_CODES[c["sampling"]]
    cfg.batch = c["batch"]
    cfg.grad_noise_std = c["grad_noise_std"]
    cfg.optimizer = OPTIMIZER_CODES[c["optimizer"]]
    cfg.momentum = c["momentum"]
    cfg.nesterov = c["nesterov"]
    cfg.beta1 = c["beta1"]
    cfg.beta2 = c["beta2"]
    cfg.adam_eps = c["adam_eps"]
    cfg.clip_norm = c["clip_norm"]
    cfg.schedule = SCHEDULE_CODES[c["schedule"]]
    cfg.step_size = c["step_size"]
    cfg.power = c["power"]
    cfg.factor = c["factor"]
    cfg.every = c["every"]
    cfg.reg_code = c["reg_code"]
    cfg.reg_scale = c["reg_scale"]
    cfg.record_every = c["record_every"]
    cfg.record_profile = c["record_profile"]
    cfg.record_weights = c.get("record_weights", 0)
    cfg.record_thread = c.get("record_thread", 0)
    cfg.max_norm = c["max_norm"]
    return cfg


def run_one(const long long[:, ::1] op_table, const double[::1] params,
            const double[:, ::1] X, const double[:, ::1] Y, double[::1] w,
            dict config, const long long[:, ::1] pert_int, const double[:, ::1] pert_real,
            const long long[::1] pert_times, data_gen, forward_gen, backward_gen, grad_gen,
            double[::1] h_objective, double[::1] h_grad_norm, double[::1] h_grad_error,
            double[::1] h_step_size, double[:, ::1] h_forward_error,
            double[:, ::1] h_backward_error, double[:, ::1] h_weights=None,
            long long[::1] h_nonfinite=None):
    """Run one perturbed SGD trajectory in place on ``w``; fill the history arrays.

    The history arrays must be preallocated (filled with NaN) with one entry per record
    (iterations 0, r, 2r, ... below n_iter). Releases the GIL for the whole loop.

    With config["record_thread"], the records are evaluated on a helper thread while the run
    goes on: the same results, to the bit, and the generators left in the same states. This
    needs PCG64 streams (a stop at a record goes back to that step's stream states); with other
    bit generators, or when no thread can be started, the run records serially.

    h_nonfinite, when given with one entry, receives the number of (step, site) pairs at which
    the perturbations left a non-finite value in the perturbed pass (up to the stop).

    Returns (stop_iteration or -1, stop_code, whether a helper thread recorded).
    """
    cdef Config cfg = config_from(config)
    cdef Net net
    cdef Pass passes[2]          # the perturbed pass; two when the helper records one of them
    cdef long long nonfinite_snap = 0   # the passes' non-finite count at the posted record
    cdef Pass* ps
    cdef int cur = 0
    cdef Pass cleanb, full
    cdef Sites sites
    cdef Py_ssize_t M = X.shape[0], ldl = Y.shape[1], d0 = X.shape[1]
    cdef Py_ssize_t B, n_w, N, i, j, s, row, pos, n_rec
    cdef long long t, stop_iter = -1
    cdef int stop = STOP_NONE
    cdef double lr, gnorm, wnorm, scale, b1c, b2c, mhat, vhat
    cdef double gsumsq = 0.0, wsumsq = 0.0   # set by the fused passes before they are read
    cdef bint recording, full_batch = cfg.sampling == SAMPLE_FULL
    cdef Stream st_data, st_fwd, st_bwd, st_grad
    cdef Stream* streams[4]
    cdef bitgen_t* bg_data
    cdef bitgen_t* bg_fwd
    cdef bitgen_t* bg_bwd
    cdef bitgen_t* bg_grad
    cdef bint fused_gnorm, fused_wnorm, defer
    cdef double *wp
    cdef double *gsum
    cdef double *ubar
    cdef double *g
    cdef double *m1
    cdef double *m2
    cdef double *scratch
    cdef double *xb
    cdef double *lb
    cdef double *fullgrad
    cdef double *gnoise
    cdef Py_ssize_t* perm
    cdef uint64_t* idx
    cdef const double* xin
    cdef const double* labin
    cdef const double* Yp = &Y[0, 0] if ldl > 0 else NULL
    cdef Net fwd_net
    cdef double inv_B
    cdef Recorder* rc
    cdef fc_worker* helper = NULL
    cdef bint concurrent = False
    cdef fc_pcg64_t stream_snap[4]   # the streams at the record the helper is working on
    cdef double* w_snap              # ... and w_t, the step's gradient and samples
    cdef double* g_snap
    cdef double* x_snap = NULL
    cdef double* l_snap = NULL

    _check_distinct(data_gen, forward_gen, backward_gen, grad_gen)
    st_data.fast = st_fwd.fast = st_bwd.fast = st_grad.fast = False
    streams[0], streams[1], streams[2], streams[3] = &st_data, &st_fwd, &st_bwd, &st_grad
    net_init(&net, op_table, params)
    N = net.N
    n_w = net.n_w
    B = M if full_batch else cfg.batch
    if d0 != net.dims[0] or w.shape[0] != n_w or Y.shape[0] != M:
        net_free(&net)
        raise ValueError("run_one: shapes do not match the plan")
    n_rec = h_objective.shape[0]
    if cfg.record_every < 1 or n_rec != (cfg.n_iter + cfg.record_every - 1) // cfg.record_every \
            or h_grad_norm.shape[0] != n_rec or h_grad_error.shape[0] != n_rec \
            or h_step_size.shape[0] != n_rec:
        net_free(&net)
        raise ValueError("run_one: the histories need one entry per record, ceil(n_iter / "
                         f"record_every), given {h_objective.shape[0]}, {h_grad_norm.shape[0]}, "
                         f"{h_grad_error.shape[0]}, {h_step_size.shape[0]} for n_iter = "
                         f"{cfg.n_iter}, record_every = {cfg.record_every}")
    if cfg.record_profile and (h_forward_error.shape[0] != n_rec
                               or h_forward_error.shape[1] != N
                               or h_backward_error.shape[0] != n_rec
                               or h_backward_error.shape[1] != N):
        net_free(&net)
        raise ValueError("run_one: profile histories have the wrong shape")
    if cfg.record_weights and (h_weights is None or h_weights.shape[0] != n_rec
                               or h_weights.shape[1] != n_w):
        net_free(&net)
        raise ValueError("run_one: the weight history has the wrong shape")
    try:
        sites_init(&sites, N, pert_int, pert_real, pert_times)
    except BaseException:
        net_free(&net)
        raise

    # One allocation for the vectors, none in the loop.
    cdef Py_ssize_t nvec = 5 * n_w + 2 * net.max_width * B + (0 if full_batch else B * (d0 + ldl))
    cdef double* vecs = <double*>calloc(nvec + 1, sizeof(double))
    # what a record writes, apart from the step's vectors: with a helper thread recording, the
    # two threads then write no cache line in common (GUARD doubles = 64 bytes on each side)
    cdef Py_ssize_t GUARD = 8
    cdef char* rec_block = <char*>calloc(
        1, sizeof(Recorder) + (4 * n_w + 4 * GUARD) * sizeof(double))
    # the weights live in this thread's own memory during the run (copied back at the end): rows
    # of the caller's weight array share cache lines between runs on different threads
    cdef double* w_run = <double*>malloc((n_w + 1) * sizeof(double))
    cdef bint w_loaded = False
    perm = <Py_ssize_t*>malloc((M if cfg.sampling == SAMPLE_SHUFFLE else 1) * sizeof(Py_ssize_t))
    idx = <uint64_t*>malloc((B if B > 0 else 1) * sizeof(uint64_t))
    for i in range(2):
        passes[i].n_nonfinite = 0
        passes[i].block = NULL
        passes[i].a = passes[i].y = passes[i].ybuf = passes[i].v = NULL
    cleanb.block = full.block = NULL
    cleanb.a = full.a = NULL
    cleanb.y = full.y = NULL
    cleanb.ybuf = full.ybuf = NULL
    cleanb.v = full.v = NULL
    try:
        if vecs == NULL or perm == NULL or idx == NULL or w_run == NULL or rec_block == NULL:
            raise MemoryError()
        if n_w > 0:
            memcpy(w_run, &w[0], n_w * sizeof(double))
        w_loaded = True
        bg_data = stream_open(&st_data, data_gen)
        bg_fwd = stream_open(&st_fwd, forward_gen)
        bg_bwd = stream_open(&st_bwd, backward_gen)
        bg_grad = stream_open(&st_grad, grad_gen)
        pass_init(&passes[0], &net, B)
        ps = &passes[0]
        pass_init(&full, &net, M)
        if not full_batch:
            pass_init(&cleanb, &net, B)
        gsum = vecs
        g = gsum + n_w
        m1 = g + n_w
        m2 = m1 + n_w
        gnoise = m2 + n_w
        rc = <Recorder*>(rec_block + GUARD * sizeof(double))
        ubar = <double*>(rec_block + sizeof(Recorder)) + 2 * GUARD
        fullgrad = ubar + n_w
        w_snap = fullgrad + n_w
        g_snap = w_snap + n_w
        scratch = gnoise + n_w
        xb = scratch + 2 * net.max_width * B   # perturbation kernels use up to 2 B d
        lb = xb + B * d0
        wp = w_run if n_w > 0 else NULL
        # -- speed (no change to any result) --
        # the perturbed pass skips the last operator's forward output when nothing reads it: no
        # forward perturbation at op N, no profile, and op N's VJP does not use its output
        fwd_net = net
        if not cfg.record_profile and sites.start[N] == sites.end[N] \
                and vjp_ignores_output(net.ops[N - 1].code):
            fwd_net.N = N - 1
        # the batch mean by a multiplication where that is exact (B a power of 2)
        inv_B = 1.0 / B if (B & (B - 1)) == 0 else 0.0
        # ||g||^2 summed by the backward pass while it writes gsum, when g is gsum unchanged
        # (one sample, no regularizer, no gradient noise); ||w||^2 summed in the SGD update
        fused_gnorm = B == 1 and cfg.reg_code == REG_NONE and not cfg.grad_noise_std > 0.0
        fused_wnorm = cfg.optimizer == OPT_SGD and cfg.momentum == 0.0
        # and then, with no clipping, the rank-1 weight gradients of one sample are applied from
        # their factors in the update, never written (except at recording steps, which read g)
        defer = False
        pos = M  # forces a shuffle before the first shuffled batch

        # -- recording: what a record reads and where it writes (record_step) --
        rc.net = &net
        rc.n_fwd = fwd_net.N
        rc.cfg = &cfg
        rc.full_batch = full_batch
        rc.full = &full
        rc.cleanb = &cleanb
        rc.X = &X[0, 0]
        rc.Y = Yp
        rc.ldl = ldl
        rc.fullgrad = fullgrad
        rc.ubar = ubar
        rc.h_objective = &h_objective[0]
        rc.h_grad_norm = &h_grad_norm[0]
        rc.h_grad_error = &h_grad_error[0]
        rc.h_step_size = &h_step_size[0]
        rc.h_forward_error = &h_forward_error[0, 0] if cfg.record_profile else NULL
        rc.h_backward_error = &h_backward_error[0, 0] if cfg.record_profile else NULL
        rc.h_weights = &h_weights[0, 0] if cfg.record_weights and n_w > 0 else NULL
        rc.stop = False
        # ... on a helper thread: the run's steps go on while it records (a second perturbed
        # pass alternates with the one being recorded). Stopping at a record then means going
        # back to that step, so the streams must be ours to copy (PCG64, as fc.run makes them).
        for i in range(4):
            stream_snap[i] = streams[i].pcg
        concurrent = cfg.record_thread and st_data.fast and st_fwd.fast and st_bwd.fast \
            and st_grad.fast
        if concurrent:
            pass_init(&passes[1], &net, B)
            x_snap = <double*>malloc((B * d0 + 1) * sizeof(double))
            l_snap = <double*>malloc((B * ldl + 1) * sizeof(double))
            if x_snap == NULL or l_snap == NULL:
                raise MemoryError()
            helper = fc_worker_start(record_job, rc)
            concurrent = helper != NULL   # no thread to be had: record serially

        with nogil:
            for t in range(cfg.n_iter):
                # -- the step's samples (data stream) ------------------------------------
                if full_batch:
                    xin = &X[0, 0]
                    labin = Yp
                else:
                    if cfg.sampling == SAMPLE_REPLACEMENT:
                        random_bounded_uint64_fill(bg_data, 0, <uint64_t>(M - 1), B, 0, idx)
                    else:
                        if pos + B > M:
                            shuffle(bg_data, perm, M)
                            pos = 0
                        for s in range(B):
                            idx[s] = <uint64_t>perm[pos + s]
                        pos += B
                        # the next step's rows are known: start fetching them (large data sets
                        # do not fit in cache, and shuffled rows defeat the hardware prefetcher)
                        if pos + B <= M and B <= 64:
                            for s in range(B):
                                fc_prefetch(&X[perm[pos + s], 0], d0)
                    if B == 1:
                        # one sample: its row in place (nothing writes the input)
                        row = <Py_ssize_t>idx[0]
                        xin = &X[row, 0]
                        labin = Yp + row * ldl if ldl > 0 else NULL
                    else:
                        for s in range(B):
                            row = <Py_ssize_t>idx[s]
                            memcpy(xb + s * d0, &X[row, 0], d0 * sizeof(double))
                            if ldl > 0:
                                memcpy(lb + s * ldl, Yp + row * ldl, ldl * sizeof(double))
                        xin = xb
                        labin = lb if ldl > 0 else NULL

                # -- perturbed forward and backward (Eq. 5) ------------------------------
                # (speed: fwd_net skips the last operator's forward when nothing reads it)
                forward_pass(&fwd_net, wp, ps, xin, labin, ldl, &sites, t, bg_fwd, scratch)
                defer = fused_gnorm and fused_wnorm and not cfg.clip_norm > 0.0 \
                    and t % cfg.record_every != 0
                backward_pass_sumsq(&net, wp, ps, labin, ldl, &sites, t, bg_bwd, scratch, gsum,
                                    &gsumsq if fused_gnorm else NULL, defer, False)
                if B == 1:
                    g = gsum                     # the mean of one sample: no copy
                elif inv_B > 0.0:
                    for j in range(n_w):
                        g[j] = gsum[j] * inv_B   # B a power of 2: exactly gsum / B
                else:
                    for j in range(n_w):
                        g[j] = gsum[j] / B
                lr = step_size_at(&cfg, t)

                # -- recording, at w_t before the update ---------------------------------
                recording = t % cfg.record_every == 0
                if recording and not concurrent:
                    rc.t, rc.rec, rc.lr = t, t // cfg.record_every, lr
                    rc.w, rc.g, rc.pert = wp, g, ps
                    rc.xin, rc.labin = xin, labin
                    record_step(rc)
                    if rc.stop:
                        stop = STOP_NONFINITE_OBJECTIVE
                        stop_iter = t
                        break
                elif recording:
                    fc_worker_wait(helper)   # the previous record is done, its buffers free
                    if rc.stop:
                        break                # it stopped the run (resolved after the loop)
                    if n_w > 0:
                        memcpy(w_snap, wp, n_w * sizeof(double))
                        memcpy(g_snap, g, n_w * sizeof(double))
                    if xin == xb:            # the copied samples of a minibatch
                        memcpy(x_snap, xb, B * d0 * sizeof(double))
                        if ldl > 0:
                            memcpy(l_snap, lb, B * ldl * sizeof(double))
                        xin, labin = x_snap, (l_snap if ldl > 0 else NULL)
                    for i in range(4):
                        stream_snap[i] = streams[i].pcg
                    nonfinite_snap = passes[0].n_nonfinite + passes[1].n_nonfinite
                    rc.t, rc.rec, rc.lr = t, t // cfg.record_every, lr
                    rc.w, rc.g, rc.pert = w_snap, g_snap, ps
                    rc.xin, rc.labin = xin, labin
                    fc_worker_post(helper)
                    # this pass is the helper's until the job is done: go on with the other
                    # (the rest of this step reads no pass: defer is off at recording steps)
                    cur = 1 - cur
                    ps = &passes[cur]

                # -- the step's gradient: ~u + grad R(w) + sigma_n xi ---------------------
                reg_grad_add(cfg.reg_code, cfg.reg_scale, wp, g, n_w)
                if cfg.grad_noise_std > 0.0:
                    random_standard_normal_fill(bg_grad, n_w, gnoise)
                    for j in range(n_w):
                        g[j] = g[j] + cfg.grad_noise_std * gnoise[j]
                if defer and not isfinite(gsumsq):
                    # safe_norm_of scans g for the non-finite entry: write the deferred blocks
                    write_deferred_blocks(&net, wp, ps, gsum)
                    defer = False
                gnorm = safe_norm_of(gsumsq, g, n_w) if fused_gnorm else safe_norm(g, n_w)
                if not isfinite(gnorm):
                    stop = STOP_NONFINITE_GRADIENT
                elif gnorm > cfg.max_norm:
                    stop = STOP_GRADIENT_NORM
                if stop != STOP_NONE:
                    stop_iter = t
                    break
                if cfg.clip_norm > 0.0 and gnorm > cfg.clip_norm:
                    scale = cfg.clip_norm / gnorm
                    for j in range(n_w):
                        g[j] = g[j] * scale

                # -- the optimizer's update ----------------------------------------------
                if cfg.optimizer == OPT_SGD:
                    if cfg.momentum == 0.0:
                        # w - lr g, vectorised with the same roundings: (-lr) g = -(lr g);
                        # and ||w||^2 of the new w in the same pass (as fc_sumsq would sum it)
                        wsumsq = sgd_step(&net, ps, wp, g, -lr, defer)
                    else:
                        # heavy ball: m = beta m + g; Nesterov steps along g + beta m
                        for j in range(n_w):
                            m1[j] = cfg.momentum * m1[j] + g[j]
                            if cfg.nesterov:
                                wp[j] = wp[j] - lr * (g[j] + cfg.momentum * m1[j])
                            else:
                                wp[j] = wp[j] - lr * m1[j]
                else:
                    # Adam with bias correction
                    b1c = 1.0 - pow(cfg.beta1, <double>(t + 1))
                    b2c = 1.0 - pow(cfg.beta2, <double>(t + 1))
                    for j in range(n_w):
                        m1[j] = cfg.beta1 * m1[j] + (1.0 - cfg.beta1) * g[j]
                        m2[j] = cfg.beta2 * m2[j] + (1.0 - cfg.beta2) * g[j] * g[j]
                        mhat = m1[j] / b1c
                        vhat = m2[j] / b2c
                        wp[j] = wp[j] - lr * mhat / (sqrt(vhat) + cfg.adam_eps)
                wnorm = safe_norm_of(wsumsq, wp, n_w) if fused_wnorm else safe_norm(wp, n_w)
                if not isfinite(wnorm):
                    stop = STOP_NONFINITE_WEIGHTS
                elif wnorm > cfg.max_norm:
                    stop = STOP_WEIGHT_NORM
                if stop != STOP_NONE:
                    stop_iter = t
                    break
            if concurrent:
                # the last record is done; when a record stopped the run, the run ends at its
                # step, as it does serially: with w_t, and the streams as they were there
                fc_worker_wait(helper)
                if rc.stop:
                    stop = STOP_NONFINITE_OBJECTIVE
                    stop_iter = rc.t
                    if n_w > 0:
                        memcpy(wp, w_snap, n_w * sizeof(double))
                    for i in range(4):
                        streams[i].pcg = stream_snap[i]
                    passes[0].n_nonfinite, passes[1].n_nonfinite = nonfinite_snap, 0
    finally:
        fc_worker_stop(helper)   # before the buffers it uses go
        if w_loaded and n_w > 0:
            memcpy(&w[0], w_run, n_w * sizeof(double))
        free(w_run)
        free(rec_block)
        free(x_snap)
        free(l_snap)
        if h_nonfinite is not None and h_nonfinite.shape[0] > 0:
            h_nonfinite[0] = passes[0].n_nonfinite + passes[1].n_nonfinite
        pass_free(&passes[0])
        pass_free(&passes[1])
        pass_free(&full)
        if not full_batch:
            pass_free(&cleanb)
        free(vecs)
        free(perm)
        free(idx)
        sites_free(&sites)
        net_free(&net)
        # the generators continue where the run stopped (as numpy's own draws would leave them)
        close_streams(streams, (data_gen, forward_gen, backward_gen, grad_gen))
    return stop_iter, stop, bool(concurrent)


def batch_gradients(const long long[:, ::1] op_table, const double[::1] params,
                    const double[:, ::1] X, const double[:, ::1] Y, const double[::1] w,
                    const long long[:, ::1] pert_int, const double[:, ::1] pert_real,
                    const long long[::1] pert_times, long long t, forward_gen, backward_gen,
                    double[::1] g_perturbed, double[::1] g_clean):
    """One Eq. 5 pass on the samples X at iteration t: the batch-mean data gradients of the
    perturbed pass and of the clean pass (the regularizer is not included)."""
    cdef Net net
    cdef Pass pert, clean
    cdef Sites sites
    cdef Py_ssize_t j, B = X.shape[0], ldl = Y.shape[1]
    cdef const double* lab = &Y[0, 0] if ldl > 0 else NULL
    cdef Stream st_fwd, st_bwd
    cdef Stream* streams[2]
    cdef bitgen_t* bg_fwd
    cdef bitgen_t* bg_bwd
    cdef const double* wp
    cdef double* scratch
    _check_distinct(forward_gen, backward_gen)
    st_fwd.fast = st_bwd.fast = False
    net_init(&net, op_table, params)
    pert.block = clean.block = NULL
    pert.a = clean.a = pert.y = clean.y = pert.ybuf = clean.ybuf = pert.v = clean.v = NULL
    sites.perts = NULL
    sites.start = sites.end = NULL
    scratch = <double*>malloc((2 * net.max_width * B + 1) * sizeof(double))
    try:
        if X.shape[1] != net.dims[0] or w.shape[0] != net.n_w or Y.shape[0] != B \
                or g_perturbed.shape[0] != net.n_w or g_clean.shape[0] != net.n_w or B < 1:
            raise ValueError("batch_gradients: shapes do not match the plan")
        if scratch == NULL:
            raise MemoryError()
        sites_init(&sites, net.N, pert_int, pert_real, pert_times)
        bg_fwd = stream_open(&st_fwd, forward_gen)
        bg_bwd = stream_open(&st_bwd, backward_gen)
        pass_init(&pert, &net, B)
        pass_init(&clean, &net, B)
        wp = &w[0] if net.n_w > 0 else NULL
        with nogil:
            forward_pass(&net, wp, &pert, &X[0, 0], lab, ldl, &sites, t, bg_fwd, scratch)
            backward_pass(&net, wp, &pert, lab, ldl, &sites, t, bg_bwd, scratch,
                          &g_perturbed[0] if net.n_w > 0 else NULL, False)
            forward_pass(&net, wp, &clean, &X[0, 0], lab, ldl, NULL, 0, NULL, NULL)
            backward_pass(&net, wp, &clean, lab, ldl, NULL, 0, NULL, NULL,
                          &g_clean[0] if net.n_w > 0 else NULL, False)
            for j in range(net.n_w):
                g_perturbed[j] = g_perturbed[j] / B
                g_clean[j] = g_clean[j] / B
    finally:
        free(scratch)
        pass_free(&pert)
        pass_free(&clean)
        sites_free(&sites)
        net_free(&net)
        streams[0], streams[1] = &st_fwd, &st_bwd
        close_streams(streams, (forward_gen, backward_gen))
