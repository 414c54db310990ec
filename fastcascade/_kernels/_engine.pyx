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
cimport cython
from libc.math cimport sqrt, pow, floor, isfinite, fabs, NAN
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_interval

cdef extern from "numpy/random/distributions.h":
    # what Generator.integers(off, off + rng + 1, size=cnt) uses for int64 (Lemire's method)
    void random_bounded_uint64_fill(bitgen_t* bitgen_state, uint64_t off, uint64_t rng,
                                    Py_ssize_t cnt, bint use_masked, uint64_t* out) nogil

import numpy as np

from fastcascade._kernels._types cimport (
    OpDesc, OP_TABLE_WIDTH, OP_IDENTITY, OP_MARGIN, OP_SOFTPLUS, OP_LINEAR, OP_RELU, OP_LOGISTIC_LOSS,
    OP_SQUARED_ERROR, OP_SOFTMAX_XENT, OP_FIXED_LINEAR, OP_DIAG_LINEAR, OP_INNER_SQUARE)
from fastcascade._kernels._ops cimport (
    op_forward, op_forward_with_derivative, op_vjp_set, opdesc_from_row, op_wgrad_deferrable,
    op_vjp_deferred, op_sgd_step_deferred, op_wgrad_pairable, op_wgrad_set_pair)
from fastcascade._kernels._fastmath cimport (
    fc_fastmath_init, fc_fastmath_select, fc_fastmath_level, fc_sum, fc_sumsq, fc_axpy_exact,
    fc_axpy_exact_sumsq)
from fastcascade._kernels._noise cimport (
    Perturbation, perturbation_from_rows, perturbation_active, perturbation_apply,
    perturbation_apply_to,
    PERT_INT_FIELDS, PERT_REAL_FIELDS, PCOL_TIMING, PCOL_T_A, PCOL_T_B, TIMING_AT, Stream,
    stream_open, stream_close, fc_pcg64_t, normal_fill)

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
    STOP_INTERRUPTED = 6         # SIGINT (Ctrl-C) arrived: fc.run discards the run

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
    int fc_worker_idle(fc_worker* w) noexcept nogil
    void fc_worker_stop(fc_worker* w) noexcept nogil

# How this extension was built (setup.py's switches), for `fastcascade info`.
BUILD_FLAGS = {"debug": bool(FASTCASCADE_BUILD_DEBUG), "native": bool(FASTCASCADE_BUILD_NATIVE)}

# For the Python side.
OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}
SCHEDULE_CODES = {"constant": SCHED_CONSTANT, "inverse_power": SCHED_INVERSE_POWER,
                  "step_decay": SCHED_STEP_DECAY}
SAMPLING_CODES = {"full": SAMPLE_FULL, "replacement": SAMPLE_REPLACEMENT,
                  "shuffle": SAMPLE_SHUFFLE}
REG_CODES = {"none": REG_NONE, "l2": REG_L2, "nonconvex": REG_NONCONVEX}
# The keys config_from reads (fastcascade.plan builds the dict with exactly these; the last
# two are for tests only)
CONFIG_KEYS = ("n_iter", "sampling", "batch", "grad_noise_std", "optimizer", "momentum",
               "nesterov", "beta1", "beta2", "adam_eps", "clip_norm", "schedule", "step_size",
               "power", "factor", "every", "reg_code", "reg_scale", "record_every",
               "record_profile", "record_weights", "record_thread", "max_norm",
               "_record_behind_every", "_first_ahead")
STOP_REASONS = {
    STOP_NONE: "",
    STOP_NONFINITE_GRADIENT: "non-finite gradient",
    STOP_GRADIENT_NORM: "gradient norm above max_norm",
    STOP_NONFINITE_WEIGHTS: "non-finite weights",
    STOP_WEIGHT_NORM: "weight norm above max_norm",
    STOP_NONFINITE_OBJECTIVE: "non-finite objective",
    STOP_INTERRUPTED: "interrupted",
}


cdef extern from "_interrupt.h":
    int fc_interrupt_install() noexcept nogil
    void fc_interrupt_restore() noexcept nogil
    int fc_interrupt_requested() noexcept nogil


def interrupt_install():
    """Route SIGINT to the engine's stop flag, then to the handler it replaces (call from the
    main thread; calls nest). Raises OSError when the handler cannot be installed."""
    if fc_interrupt_install() != 0:
        raise OSError("could not install the SIGINT handler")


def interrupt_restore():
    """Undo the matching :func:`interrupt_install` (the outermost one restores the handler)."""
    fc_interrupt_restore()


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
    long long behind_every    # tests: every k-th record counts the helper as busy (0: never)
    int first_ahead           # tests: 0 turns off f_1's forward made by the update (sgd_step)
    double max_norm


ctypedef struct FirstBlockPair:
    # Speed at a recorded full-batch step: the perturbed pass leaves f_1's weight block of its
    # gradient sum (backward_pass_sumsq(..., leave_first=True)), and the clean pass of the
    # record writes it beside its own, in one pass over the data (op_wgrad_set_pair: f_1's
    # kernel is bound by its latency chains, two gradients fill them); then g = gsum / B.
    const double* v1             # the perturbed pass's message into f_1's output
    double* gsum                 # its gradient sum
    double* g                    # the step's gradient: gsum / B, written by finish_pair
    Py_ssize_t B
    double inv_B


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
    const FirstBlockPair* pair   # not NULL: the step's f_1 block is left for this record
    # the outcome: the clean objective was not finite (the run stops at t)
    bint stop


# ---------------------------------------------------------------------------------------------
# Setup and teardown (with the GIL)

cdef int net_init(Net* net, const long long[:, ::1] table, const double[::1] params) except -1:
    cdef Py_ssize_t i, N = table.shape[0]
    if table.shape[1] != OP_TABLE_WIDTH or N < 1:
        raise ValueError(f"op_table: expected (N >= 1, {OP_TABLE_WIDTH}), given ({N}, "
                         f"{table.shape[1]})")
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
        if pint[k, PCOL_TIMING] == TIMING_AT and (
                pint[k, PCOL_T_A] < 0 or pint[k, PCOL_T_A] > pint[k, PCOL_T_B]
                or pint[k, PCOL_T_B] > times.shape[0]):
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

cdef extern from *:
    """
    /* Whether x[0 .. n) holds an inf or a NaN (an exponent of all ones): adding one to the
       exponent field then carries into the sign bit, and only then. An AND, an ADD and an OR
       a value, no compare: vectorised (a compare-to-bool per value was not, and cost 14% of
       the paper step). On x86 the AVX2 copy doubles the lanes; the answer is the same. */
    #include <stdint.h>
    #define FC_NONFINITE_LOOP                                                       \
        const uint64_t* u = (const uint64_t*)z;                                     \
        uint64_t bad = 0;                                                           \
        for (Py_ssize_t j = 0; j < n; j++)                                          \
            bad |= (u[j] & 0x7ff0000000000000ULL) + 0x0010000000000000ULL;         \
        return (int)(bad >> 63);
    static int fc_any_nonfinite_portable(const double* z, Py_ssize_t n) { FC_NONFINITE_LOOP }
    #if defined(__GNUC__) && defined(__x86_64__)
    __attribute__((target("avx2")))
    static int fc_any_nonfinite_avx2(const double* z, Py_ssize_t n) { FC_NONFINITE_LOOP }
    static int fc_any_nonfinite(const double* z, Py_ssize_t n) {
        static int has_avx2 = -1;   /* a benign race: every thread computes the same value */
        if (has_avx2 < 0) has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
        return has_avx2 ? fc_any_nonfinite_avx2(z, n) : fc_any_nonfinite_portable(z, n);
    }
    #else
    static int fc_any_nonfinite(const double* z, Py_ssize_t n) {
        return fc_any_nonfinite_portable(z, n);
    }
    #endif
    """
    int fc_any_nonfinite(const double* z, Py_ssize_t n) noexcept nogil


cdef inline bint any_nonfinite(const double* z, Py_ssize_t n) noexcept nogil:
    return fc_any_nonfinite(z, n) != 0


cdef void forward_pass(const Net* net, const double* w, Pass* ps, const double* x,
                       const double* lab, Py_ssize_t ldl, const Sites* sites, long long t,
                       bitgen_t* bg, double* scratch, bint first_done) noexcept nogil:
    # ~y_i = f_i(~y_{i-1}, w_i) + delta_i (Eq. 5, forward); sites == NULL: the clean pass.
    # first_done: a[1] already holds f_1(x, w_1) (the previous step's update made it, sgd_step)
    cdef Py_ssize_t i, k, B = ps.B
    cdef const OpDesc* op
    ps.y[0] = <double*>x
    for i in range(1, net.N + 1):
        op = &net.ops[i - 1]
        if i > 1 or not first_done:
            op_forward(op, w + op.w_off, net.params + op.p_off, ps.y[i - 1], ps.a[i], lab, ldl,
                       B)
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
                        double* scratch, double* gsum, bint last_vjp_done,
                        const FirstBlockPair* pair) noexcept nogil:
    # ~v_{i-1} = J1_i(~y_{i-1})^T ~v_i + eps_i;  gsum = sum_s J2_i(~y_{i-1})^T ~v_i  (Eq. 5),
    # from v_N = 1 (set by pass_init). last_vjp_done: v[N - 1] already holds f_N's VJP
    # (clean_eval_shared computed it with f_N's value; f_N has no weights). pair (or NULL): f_1's
    # block of another pass on the same samples, written beside this pass's (FirstBlockPair).
    backward_pass_sumsq(net, w, ps, lab, ldl, sites, t, bg, scratch, gsum, NULL, False,
                        last_vjp_done, False, pair)


cdef void backward_pass_sumsq(const Net* net, const double* w, Pass* ps, const double* lab,
                              Py_ssize_t ldl, const Sites* sites, long long t, bitgen_t* bg,
                              double* scratch, double* gsum, double* gsumsq,
                              bint defer, bint last_vjp_done, bint leave_first,
                              const FirstBlockPair* pair) noexcept nogil:
    # backward_pass; also, when gsumsq is not NULL, gsumsq[0] = sum_j gsum_j^2 (the operators'
    # blocks summed in the order N..1, each computed by its kernel while it writes the block).
    # The operators' weight blocks tile gsum (net_init checks it), so each operator writes its
    # own block (op_vjp_set) and gsum needs no zeroing pass first.
    # defer (with gsumsq): the blocks of deferrable operators (op_wgrad_deferrable) are left
    # unwritten, for sgd_step(..., deferred=True) or write_deferred_blocks.
    # last_vjp_done, pair: as in backward_pass. leave_first: f_1's block is left unwritten, for
    # a pass with pair (f_1 sends no message back: nothing else is left; without gsumsq).
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
        elif i == 1 and leave_first:
            continue
        elif i == 1 and pair != NULL:
            op_wgrad_set_pair(op, w + op.w_off, net.params + op.p_off, ps.y[0], ps.a[1], lab,
                              ldl, B, ps.v[1], gsum + op.w_off, pair.v1, pair.gsum + op.w_off)
            continue
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


cdef double sgd_step(const Net* net, Pass* ps, double* w, const double* g, double a,
                     bint deferred, const double* x_next) noexcept nogil:
    # w += a g with fc_axpy_exact's roundings; returns ||w||^2 of the new w. deferred: g's
    # deferred blocks (backward_pass_sumsq(..., defer=True)) are applied from the pass's factors
    # (op_sgd_step_deferred: the same bits for w), block by block (another summation order),
    # the last operator's first: the backward pass has just read the last weights (in L1), and
    # the first ones, updated last, are still there when the next step's forward pass reads
    # them (per-sample MLP of width 64: 15% less time in the step's kernels). x_next (deferred,
    # f_1 deferrable): the next step's sample; f_1's update also writes f_1(x_next) to ps.a[1]
    # in its pass over w_1 (forward_pass(..., first_done=True) then skips it: one pass over the
    # first weights a step fewer)
    cdef Py_ssize_t i
    cdef const OpDesc* op
    cdef double acc = 0.0
    if not deferred:
        return fc_axpy_exact_sumsq(a, g, w, net.n_w)
    for i in range(net.N, 0, -1):
        op = &net.ops[i - 1]
        if op.n_w == 0:
            continue
        if op_wgrad_deferrable(op, ps.B):
            acc = acc + op_sgd_step_deferred(op, w + op.w_off, ps.y[i - 1], ps.v[i], a,
                                             x_next if i == 1 else NULL, ps.a[1])
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
    return clean_eval_shared(net, 0, w, ps, NULL, X, Y, ldl, grad, NULL)


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
                              Py_ssize_t ldl, double* grad,
                              const FirstBlockPair* pair) noexcept nogil:
    # The clean mean loss on the samples x and its gradient (into grad). With pert, the perturbed
    # pass on the same samples, its forward outputs a[i] are reused (i <= n_fwd, the operators
    # it ran) for every operator whose input was not perturbed
    # (pert.y[k] == pert.a[k] for all 1 <= k < i): they are the clean outputs, computed by the
    # same kernel on the same input, so the results are bit-identical to a fresh clean pass.
    # Returns the batch-mean loss; grad = its gradient. Afterwards clean.y[i] points at the
    # clean values (possibly pert.a[i]) until the next pass. pair: as in backward_pass.
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
    backward_pass(net, w, clean, lab, ldl, NULL, 0, NULL, NULL, grad, last_vjp_done, pair)
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


cdef inline void batch_mean(double* g, const double* gsum, Py_ssize_t n, Py_ssize_t B,
                            double inv_B) noexcept nogil:
    # g = gsum / B; inv_B > 0 when B is a power of 2: times 1/B is then exactly the quotient
    cdef Py_ssize_t j
    if inv_B > 0.0:
        for j in range(n):
            g[j] = gsum[j] * inv_B
    else:
        for j in range(n):
            g[j] = gsum[j] / B


cdef inline void finish_pair(const FirstBlockPair* pair, Py_ssize_t n_w) noexcept nogil:
    # the step's gradient, once the clean pass has written the perturbed pass's f_1 block
    batch_mean(pair.g, pair.gsum, n_w, pair.B, pair.inv_B)


cdef void record_step(Recorder* r) noexcept nogil:
    # The histories' entries at r.rec: the clean objective and gradient norm at w_t, the step
    # size, the gradient error, and (optionally) the error profile and the weights.
    cdef const Net* net = r.net
    cdef const Config* cfg = r.cfg
    cdef Py_ssize_t i, n_w = net.n_w, N = net.N, B = r.pert.B, rec = r.rec
    cdef Pass* clean = r.full if r.full_batch else r.cleanb
    cdef double obj
    if r.full_batch:
        obj = clean_eval_shared(net, r.n_fwd, r.w, r.full, r.pert, r.X, r.Y, r.ldl, r.fullgrad,
                                r.pair)
        if r.pair != NULL:
            finish_pair(r.pair, n_w)
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
        clean_eval_shared(net, r.n_fwd, r.w, r.cleanb, r.pert, r.xin, r.labin, r.ldl, r.ubar,
                          NULL)
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
    cfg.behind_every = c.get("_record_behind_every", 0)
    cfg.first_ahead = c.get("_first_ahead", 1)
    cfg.max_norm = c["max_norm"]
    return cfg


@cython.final
@cython.auto_pickle(False)   # it holds the run's buffers: nothing to pickle
cdef class RunState:
    """One perturbed SGD run of the compiled engine, advanced step by step.

    Everything a run uses is allocated here, with the GIL, once; :meth:`advance` then runs
    iterations ``t .. t_end - 1`` without it, in small steps (``_sample``, ``_passes``,
    ``_record``, ``_gradient``, ``_update``), each beside its NumPy twin in
    ``fastcascade.reference_engine``. ``run_one`` is one ``advance`` over ``n_iter``;
    ``fastcascade.Simulator`` calls it many times: the same bits either way.

    Parameters
    ----------
    op_table, params, X, Y
        The plan and the data (``Problem.plan``, ``Problem.data``).
    w : numpy.ndarray
        The initial weights (copied in; :meth:`weights` is the live vector).
    config : dict
        The engine configuration (``Optimizer.engine_config()`` plus the run's settings).
    pert_int, pert_real, pert_times
        The perturbation tables (``perturbation_tables``), rows sorted by site.
    generators : tuple of 4 numpy.random.Generator
        The data, forward, backward and gradient streams; theirs until :meth:`close`.
    """
    cdef Config cfg
    cdef Net net, fwd_net
    cdef Pass passes[2]          # the perturbed pass; two when the helper records one of them
    cdef Pass full, cleanb
    cdef Pass* ps
    cdef Sites sites
    cdef bint sites_ready
    cdef object tables           # the perturbation tables (sites point into pert_times)
    cdef Stream st[4]
    cdef Stream* streams[4]
    cdef bitgen_t* bg[4]         # data, forward, backward, gradient
    cdef object generators
    cdef bint streams_open
    cdef const double[:, ::1] X
    cdef const double[:, ::1] Y
    cdef const double[::1] params
    cdef const long long[:, ::1] op_table
    cdef const double* Yp
    cdef Py_ssize_t M, d0, ldl, B, n_w, pos
    cdef bint full_batch, fused_gnorm, fused_wnorm, defer, can_pair, pairing
    cdef bint first_ahead_ok, first_ready, next_drawn
    cdef long long t_end
    cdef uint64_t idx_next           # the next step's row, drawn ahead (next_drawn)
    cdef fc_pcg64_t data_snap        # the data stream before that draw
    cdef FirstBlockPair pair
    cdef double inv_B, gsumsq, wsumsq
    cdef double* vecs
    cdef char* rec_block
    cdef double* w_run           # the weights, in w_owner (views of it outlive the state)
    cdef object w_owner
    cdef Py_ssize_t* perm
    cdef uint64_t* idx
    cdef double *gsum
    cdef double *g
    cdef double *m1
    cdef double *m2
    cdef double *gnoise
    cdef double *scratch
    cdef double *xb
    cdef double *lb
    cdef double *ubar
    cdef double *fullgrad
    cdef double *w_snap          # w_t, the step's gradient and samples of the posted record
    cdef double *g_snap
    cdef double* x_snap
    cdef double* l_snap
    cdef fc_pcg64_t stream_snap[4]   # ... and the streams there
    cdef long long nonfinite_snap    # ... and the passes' non-finite count
    cdef const double* xin           # the step's samples
    cdef const double* labin
    cdef Recorder* rc
    cdef fc_worker* helper
    cdef bint concurrent
    cdef int cur
    cdef Recorder* rc_inline         # the run's own recorder while the helper is busy
    cdef char* rec_block2
    cdef Pass full2, cleanb2
    cdef long long n_checks          # records so far (the tests' forced-busy pattern)
    cdef Py_ssize_t inline_hi        # one past the last history entry recorded inline
    cdef readonly long long t        # the next iteration
    cdef readonly int stop
    cdef readonly long long stop_iter
    cdef readonly long long n_ahead  # steps whose f_1 output the previous update made (tests)
    cdef long long rec_base          # the record index of the histories' first entry
    cdef Py_ssize_t n_rec            # ... and how many entries they have
    cdef object histories            # the arrays the records go to (kept alive)

    def __cinit__(self):
        cdef int i
        self.vecs = self.w_run = NULL
        self.rec_block = self.rec_block2 = NULL
        self.perm = NULL
        self.idx = NULL
        self.x_snap = self.l_snap = NULL
        self.helper = NULL
        self.net.ops = NULL
        self.net.dims = NULL
        self.rec_block2 = NULL
        for i in range(2):
            _pass_clear(&self.passes[i])
        _pass_clear(&self.full)
        _pass_clear(&self.cleanb)
        _pass_clear(&self.full2)
        _pass_clear(&self.cleanb2)
        self.sites_ready = False
        self.streams_open = False
        self.stop_iter = -1

    def __init__(self, const long long[:, ::1] op_table, const double[::1] params,
                 const double[:, ::1] X, const double[:, ::1] Y, const double[::1] w,
                 dict config, const long long[:, ::1] pert_int, const double[:, ::1] pert_real,
                 const long long[::1] pert_times, generators):
        self.cfg = config_from(config)
        self.op_table, self.params, self.X, self.Y = op_table, params, X, Y
        generators = tuple(generators)
        _check_distinct(*generators)
        net_init(&self.net, op_table, params)
        self.M, self.ldl, self.d0, self.n_w = X.shape[0], Y.shape[1], X.shape[1], self.net.n_w
        self.full_batch = self.cfg.sampling == SAMPLE_FULL
        self.B = self.M if self.full_batch else self.cfg.batch
        if self.d0 != self.net.dims[0] or w.shape[0] != self.n_w or Y.shape[0] != self.M:
            raise ValueError("run_one: shapes do not match the plan")
        self.Yp = &Y[0, 0] if self.ldl > 0 else NULL
        self.set_perturbations(pert_int, pert_real, pert_times)
        self._allocate()
        if self.n_w > 0:
            memcpy(self.w_run, &w[0], self.n_w * sizeof(double))
        self._open_streams(generators)
        self._speedups()
        self._recorder()
        self._start_helper()
        self._pairing()

    cdef int _allocate(self) except -1:
        # one allocation for the vectors, none in the loop
        cdef Py_ssize_t n_w = self.n_w, B = self.B, W = self.net.max_width
        cdef Py_ssize_t nvec = 5 * n_w + 2 * W * B + (0 if self.full_batch else
                                                      B * (self.d0 + self.ldl))
        # what a record writes, apart from the step's vectors: with a helper thread recording,
        # the two threads then write no cache line in common (GUARD doubles = 64 bytes a side)
        cdef Py_ssize_t GUARD = 8
        cdef double[::1] wv
        self.vecs = <double*>calloc(nvec + 1, sizeof(double))
        self.rec_block = <char*>calloc(1, sizeof(Recorder) + (4 * n_w + 4 * GUARD) * sizeof(double))
        # the weights live in this run's own memory: rows of the caller's weight array share
        # cache lines between runs on different threads
        self.w_owner = np.zeros(n_w + 1)
        wv = self.w_owner
        self.w_run = &wv[0]
        self.perm = <Py_ssize_t*>malloc(
            (self.M if self.cfg.sampling == SAMPLE_SHUFFLE else 1) * sizeof(Py_ssize_t))
        self.idx = <uint64_t*>malloc((B if B > 0 else 1) * sizeof(uint64_t))
        if self.vecs == NULL or self.rec_block == NULL or self.perm == NULL \
                or self.idx == NULL:
            raise MemoryError()
        pass_init(&self.passes[0], &self.net, B)
        self.ps = &self.passes[0]
        self.cur = 0
        pass_init(&self.full, &self.net, self.M)
        if not self.full_batch:
            pass_init(&self.cleanb, &self.net, B)
        self.gsum = self.vecs
        self.g = self.gsum + n_w
        self.m1 = self.g + n_w
        self.m2 = self.m1 + n_w
        self.gnoise = self.m2 + n_w
        self.scratch = self.gnoise + n_w
        self.xb = self.scratch + 2 * W * B   # perturbation kernels use up to 2 B d
        self.lb = self.xb + B * self.d0
        self.rc = <Recorder*>(self.rec_block + GUARD * sizeof(double))
        self.ubar = <double*>(self.rec_block + sizeof(Recorder)) + 2 * GUARD
        self.fullgrad = self.ubar + n_w
        self.w_snap = self.fullgrad + n_w
        self.g_snap = self.w_snap + n_w
        self.pos = self.M  # forces a shuffle before the first shuffled batch
        return 0

    cdef int _open_streams(self, generators) except -1:
        cdef int i
        self.generators = generators
        for i in range(4):
            self.st[i].fast = False
            self.streams[i] = &self.st[i]
        for i in range(4):
            self.bg[i] = stream_open(&self.st[i], generators[i])
        self.streams_open = True
        for i in range(4):
            self.stream_snap[i] = self.st[i].pcg
        return 0

    cdef void _speedups(self) noexcept:
        # -- speed (no change to any result) --
        cdef Py_ssize_t N = self.net.N, B = self.B
        # the perturbed pass skips the last operator's forward output when nothing reads it: no
        # forward perturbation at op N, no profile, and op N's VJP does not use its output
        self.fwd_net = self.net
        if not self.cfg.record_profile and self.sites.start[N] == self.sites.end[N] \
                and vjp_ignores_output(self.net.ops[N - 1].code):
            self.fwd_net.N = N - 1
        # the batch mean by a multiplication where that is exact (B a power of 2)
        self.inv_B = 1.0 / B if (B & (B - 1)) == 0 else 0.0
        # ||g||^2 summed by the backward pass while it writes gsum, when g is gsum unchanged
        # (one sample, no regularizer, no gradient noise); ||w||^2 summed in the SGD update
        self.fused_gnorm = B == 1 and self.cfg.reg_code == REG_NONE \
            and not self.cfg.grad_noise_std > 0.0
        self.fused_wnorm = self.cfg.optimizer == OPT_SGD and self.cfg.momentum == 0.0
        # and then, with no clipping, the rank-1 weight gradients of one sample are applied from
        # their factors in the update, never written (except at recording steps, which read g)
        self.defer = False
        self.gsumsq = self.wsumsq = 0.0   # set by the fused passes before they are read
        # the forward ahead: a deferred update of a first Linear (one sample a step) also
        # computes its output at the next step's sample, the next row of the shuffle or, drawn
        # with replacement, a row drawn one step early (where the data stream can be rewound:
        # a stop before the next step gives it back, _undraw)
        self.first_ahead_ok = self.cfg.first_ahead and B == 1 and not self.full_batch \
            and self.n_w > 0 \
            and (self.cfg.sampling == SAMPLE_SHUFFLE or self.st[0].fast) \
            and op_wgrad_deferrable(&self.net.ops[0], B) and self.net.ops[0].n_w > 0
        self.first_ready = self.next_drawn = False

    cdef void _recorder(self) noexcept:
        # what a record reads and where it writes (record_step); the histories: set_histories
        cdef Recorder* rc = self.rc
        rc.net = &self.net
        rc.n_fwd = self.fwd_net.N
        rc.cfg = &self.cfg
        rc.full_batch = self.full_batch
        rc.full = &self.full
        rc.cleanb = &self.cleanb
        rc.X = &self.X[0, 0]
        rc.Y = self.Yp
        rc.ldl = self.ldl
        rc.fullgrad = self.fullgrad
        rc.ubar = self.ubar
        rc.stop = False

    cdef int _start_helper(self) except -1:
        # records on a helper thread: the run's steps go on while it records (a second perturbed
        # pass alternates with the one being recorded). Stopping at a record then means going
        # back to that step, so the streams must be ours to copy (PCG64, as fc.run makes them).
        cdef int i
        self.concurrent = self.cfg.record_thread
        for i in range(4):
            self.concurrent = self.concurrent and self.st[i].fast
        self.n_checks, self.inline_hi = 0, 0
        if not self.concurrent:
            return 0
        pass_init(&self.passes[1], &self.net, self.B)
        self.x_snap = <double*>malloc((self.B * self.d0 + 1) * sizeof(double))
        self.l_snap = <double*>malloc((self.B * self.ldl + 1) * sizeof(double))
        if self.x_snap == NULL or self.l_snap == NULL:
            raise MemoryError()
        self._inline_recorder()
        self.helper = fc_worker_start(record_job, self.rc)
        self.concurrent = self.helper != NULL   # no thread to be had: record serially
        return 0

    cdef void _pairing(self) noexcept:
        # FirstBlockPair at the recorded steps of a full-batch run, where f_1 has weights and a
        # paired kernel; never with the fused gradient norm (one sample): the block left would
        # be missing from gsumsq
        cdef const OpDesc* first = &self.net.ops[0]
        self.can_pair = self.full_batch and self.B > 1 and not self.fused_gnorm \
            and first.n_w > 0 and op_wgrad_pairable(first)
        self.pairing = False
        self.pair.v1 = NULL
        self.pair.gsum, self.pair.g = self.gsum, self.g
        self.pair.B, self.pair.inv_B = self.B, self.inv_B

    cdef int _inline_recorder(self) except -1:
        # a second recorder with its own clean passes and vectors: while the helper is busy with
        # one record, the run makes the next ones itself instead of waiting for it
        cdef Py_ssize_t GUARD = 8
        self.rec_block2 = <char*>calloc(
            1, sizeof(Recorder) + (2 * self.n_w + 4 * GUARD) * sizeof(double))
        if self.rec_block2 == NULL:
            raise MemoryError()
        self.rc_inline = <Recorder*>(self.rec_block2 + GUARD * sizeof(double))
        self.rc_inline[0] = self.rc[0]
        pass_init(&self.full2, &self.net, self.M)
        self.rc_inline.full = &self.full2
        if not self.full_batch:
            pass_init(&self.cleanb2, &self.net, self.B)
        self.rc_inline.cleanb = &self.cleanb2
        self.rc_inline.ubar = <double*>(self.rec_block2 + sizeof(Recorder)) + 2 * GUARD
        self.rc_inline.fullgrad = self.rc_inline.ubar + self.n_w
        return 0

    def set_perturbations(self, const long long[:, ::1] pert_int,
                          const double[:, ::1] pert_real, const long long[::1] pert_times):
        """Replace the perturbation tables (between two :meth:`advance` calls).

        Parameters
        ----------
        pert_int, pert_real, pert_times
            As ``perturbation_tables`` makes them, rows sorted by site.
        """
        if self.sites_ready:
            if self.helper != NULL:
                fc_worker_wait(self.helper)
            sites_free(&self.sites)
            self.sites_ready = False
        sites_init(&self.sites, self.net.N, pert_int, pert_real, pert_times)
        self.sites_ready = True
        self.tables = (pert_int, pert_real, pert_times)
        if self.rc != NULL:
            self._speedups()
            self.rc.n_fwd = self.fwd_net.N
            if self.rc_inline != NULL:
                self.rc_inline.n_fwd = self.fwd_net.N

    def set_step_size(self, double step_size):
        """A constant step size from the next iteration on (between two :meth:`advance` calls).

        Parameters
        ----------
        step_size : float
            gamma > 0 (checked by the caller).
        """
        self.cfg.schedule = SCHED_CONSTANT
        self.cfg.step_size = step_size

    def step_size_at(self, long long t):
        """The step size the run uses at iteration ``t`` (its schedule).

        Parameters
        ----------
        t : int

        Returns
        -------
        float
        """
        return step_size_at(&self.cfg, t)

    def set_histories(self, long long rec_base, double[::1] h_objective, double[::1] h_grad_norm,
                      double[::1] h_grad_error, double[::1] h_step_size,
                      double[:, ::1] h_forward_error, double[:, ::1] h_backward_error,
                      double[:, ::1] h_weights=None):
        """Where the next records go: entry k of each array is record ``rec_base + k``.

        Parameters
        ----------
        rec_base : int
            The record index (iteration // record_every) of the arrays' first entry.
        h_objective, h_grad_norm, h_grad_error, h_step_size : numpy.ndarray (n,)
        h_forward_error, h_backward_error : numpy.ndarray (n, N), or (0, N) with no profile
        h_weights : numpy.ndarray (n, n_weights), or None with no weight history
        """
        cdef Py_ssize_t n = h_objective.shape[0], N = self.net.N
        if h_grad_norm.shape[0] != n or h_grad_error.shape[0] != n or h_step_size.shape[0] != n:
            raise ValueError("run_one: the histories need one entry per record, given "
                             f"{h_objective.shape[0]}, {h_grad_norm.shape[0]}, "
                             f"{h_grad_error.shape[0]}, {h_step_size.shape[0]}")
        if self.cfg.record_profile and (h_forward_error.shape[0] != n
                                        or h_forward_error.shape[1] != N
                                        or h_backward_error.shape[0] != n
                                        or h_backward_error.shape[1] != N):
            raise ValueError("run_one: profile histories have the wrong shape")
        if self.cfg.record_weights and (h_weights is None or h_weights.shape[0] != n
                                        or h_weights.shape[1] != self.n_w):
            raise ValueError("run_one: the weight history has the wrong shape")
        if self.helper != NULL:
            fc_worker_wait(self.helper)
        self.histories = (h_objective, h_grad_norm, h_grad_error, h_step_size, h_forward_error,
                          h_backward_error, h_weights)
        self.rec_base, self.n_rec, self.inline_hi = rec_base, n, 0
        rc = self.rc
        rc.h_objective = &h_objective[0] if n > 0 else NULL
        rc.h_grad_norm = &h_grad_norm[0] if n > 0 else NULL
        rc.h_grad_error = &h_grad_error[0] if n > 0 else NULL
        rc.h_step_size = &h_step_size[0] if n > 0 else NULL
        rc.h_forward_error = &h_forward_error[0, 0] if self.cfg.record_profile and n > 0 \
            else NULL
        rc.h_backward_error = &h_backward_error[0, 0] if self.cfg.record_profile and n > 0 \
            else NULL
        rc.h_weights = &h_weights[0, 0] if self.cfg.record_weights and self.n_w > 0 \
            and n > 0 else NULL
        if self.rc_inline != NULL:
            _same_histories(self.rc_inline, rc)

    def advance(self, long long t_end):
        """Run iterations ``t .. t_end - 1`` (fewer when the run stops) without the GIL.

        Parameters
        ----------
        t_end : int
            One past the last iteration; its records must fit the histories (set_histories).

        Returns
        -------
        bool
            Whether the run goes on (False: it stopped; ``stop`` and ``stop_iter`` say why).
        """
        cdef long long first = (self.t + self.cfg.record_every - 1) // self.cfg.record_every
        cdef long long last = (t_end + self.cfg.record_every - 1) // self.cfg.record_every
        if t_end > self.cfg.n_iter:
            raise ValueError(f"advance: t_end {t_end} is past n_iter {self.cfg.n_iter}")
        if self.stop == STOP_INTERRUPTED:   # Ctrl-C stopped the last call: go on from there
            self.stop, self.stop_iter = STOP_NONE, -1
        if self.stop != STOP_NONE:
            return False
        if t_end > self.t and (first < self.rec_base or last > self.rec_base + self.n_rec):
            raise ValueError(f"advance: records {first}..{last - 1} do not fit the histories "
                             f"(records {self.rec_base}..{self.rec_base + self.n_rec - 1})")
        with nogil:
            self._advance(t_end)
        return self.stop == STOP_NONE

    cdef void _advance(self, long long t_end) noexcept nogil:
        cdef long long t
        cdef double lr
        self.t_end = t_end
        self.first_ready = False
        self._undraw()
        for t in range(self.t, t_end):
            if fc_interrupt_requested():   # Ctrl-C: one relaxed load a step
                self._stop(STOP_INTERRUPTED, t)
                break
            self._sample()
            self._passes(t)
            lr = step_size_at(&self.cfg, t)
            # recording, at w_t before the update
            if t % self.cfg.record_every == 0 and not self._record(t, lr):
                break
            if not self._gradient(t):
                break
            if not self._update(t, lr):
                break
            self.t = t + 1
        self._settle()

    cdef inline void _stop(self, int code, long long t) noexcept nogil:
        self.stop, self.stop_iter, self.t = code, t, t
        self._undraw()

    cdef inline void _undraw(self) noexcept nogil:
        # the next step's row was drawn ahead (_next_sample) and that step will not run here
        if self.next_drawn:
            self.st[0].pcg = self.data_snap
            self.next_drawn = False

    cdef inline void _sample(self) noexcept nogil:
        # the step's samples (data stream): xin, labin
        cdef Py_ssize_t s, row, B = self.B, M = self.M, d0 = self.d0, ldl = self.ldl
        if self.full_batch:
            self.xin = &self.X[0, 0]
            self.labin = self.Yp
            return
        if self.next_drawn:
            self.idx[0] = self.idx_next
            self.next_drawn = False
        elif self.cfg.sampling == SAMPLE_REPLACEMENT:
            random_bounded_uint64_fill(self.bg[0], 0, <uint64_t>(M - 1), B, 0, self.idx)
        else:
            if self.pos + B > M:
                shuffle(self.bg[0], self.perm, M)
                self.pos = 0
            for s in range(B):
                self.idx[s] = <uint64_t>self.perm[self.pos + s]
            self.pos += B
            # the next step's rows are known: start fetching them (large data sets do not fit
            # in cache, and shuffled rows defeat the hardware prefetcher)
            if self.pos + B <= M and B <= 64:
                for s in range(B):
                    fc_prefetch(&self.X[self.perm[self.pos + s], 0], d0)
        if B == 1:
            # one sample: its row in place (nothing writes the input)
            row = <Py_ssize_t>self.idx[0]
            self.xin = &self.X[row, 0]
            self.labin = self.Yp + row * ldl if ldl > 0 else NULL
            return
        for s in range(B):
            row = <Py_ssize_t>self.idx[s]
            memcpy(self.xb + s * d0, &self.X[row, 0], d0 * sizeof(double))
            if ldl > 0:
                memcpy(self.lb + s * ldl, self.Yp + row * ldl, ldl * sizeof(double))
        self.xin = self.xb
        self.labin = self.lb if ldl > 0 else NULL

    cdef inline void _passes(self, long long t) noexcept nogil:
        # the perturbed forward and backward passes (Eq. 5): g = the batch mean of ~u
        # (speed: fwd_net skips the last operator's forward when nothing reads it)
        cdef Py_ssize_t j, n_w = self.n_w
        cdef double* wp = self.w_run if n_w > 0 else NULL
        forward_pass(&self.fwd_net, wp, self.ps, self.xin, self.labin, self.ldl, &self.sites, t,
                     self.bg[1], self.scratch, self.first_ready)
        self.first_ready = False
        self.defer = self.fused_gnorm and self.fused_wnorm and not self.cfg.clip_norm > 0.0 \
            and t % self.cfg.record_every != 0
        # a full-batch step to be recorded on this thread (serially, or while the helper is
        # busy): f_1's block is left for the record (FirstBlockPair; _record writes it itself
        # if it posts the record to the helper after all)
        self.pairing = self.can_pair and t % self.cfg.record_every == 0 and \
            (not self.concurrent or not fc_worker_idle(self.helper))
        backward_pass_sumsq(&self.net, wp, self.ps, self.labin, self.ldl, &self.sites, t,
                            self.bg[2], self.scratch, self.gsum,
                            &self.gsumsq if self.fused_gnorm else NULL, self.defer, False,
                            self.pairing, NULL)
        if self.B == 1:
            self.g = self.gsum                   # the mean of one sample: no copy
        elif self.pairing:
            self.pair.v1 = self.ps.v[1]          # g: finish_pair, in the record
        else:
            batch_mean(self.g, self.gsum, n_w, self.B, self.inv_B)

    cdef inline bint _record(self, long long t, double lr) noexcept nogil:
        # The histories at w_t: made here, or posted to the helper thread when it is free.
        # While it is busy with the previous record (its core taken, say by another process),
        # the run makes the record itself, on a recorder of its own, and goes on: it never
        # waits for the helper. Either way a record computes the same values. Returns False
        # when the run stops (a record found a non-finite objective).
        cdef bint forced_busy, ok
        if not self.concurrent:
            return self._record_here(self.rc, t, lr)
        self.n_checks += 1
        forced_busy = self.cfg.behind_every > 0 and self.n_checks % self.cfg.behind_every == 0
        if self.cfg.behind_every > 0 and not forced_busy:
            fc_worker_wait(self.helper)   # tests: the pattern alone decides (no timing)
        if fc_worker_idle(self.helper) and not forced_busy:
            if self.rc.stop:          # the helper's last record stopped the run, back there
                self._rollback()
                return False
            if self.pairing:          # the helper became free after the passes
                self._write_first_block()
            self._post_record(t, lr)
            return True
        ok = self._record_here(self.rc_inline, t, lr)
        self.inline_hi = max(self.inline_hi, self.rc_inline.rec + 1)
        if ok:
            return True
        fc_worker_wait(self.helper)   # a stop here; the helper's earlier record may stop first
        if self.rc.stop:
            self._rollback()
        return False

    cdef inline void _write_first_block(self) noexcept nogil:
        # the f_1 block the passes left for a paired record, written alone (the same bits), and
        # g; for a record posted to the helper instead
        cdef const OpDesc* op = &self.net.ops[0]
        op_vjp_set(op, self.w_run + op.w_off, self.net.params + op.p_off, self.ps.y[0],
                   self.ps.a[1], self.ps.v[1], self.labin, self.ldl, self.B, NULL,
                   self.gsum + op.w_off, NULL)
        batch_mean(self.g, self.gsum, self.n_w, self.B, self.inv_B)
        self.pairing = False

    cdef inline bint _record_here(self, Recorder* rc, long long t, double lr) noexcept nogil:
        # a record on this thread; False (and the run stopped at t) for a non-finite objective
        self._point_recorder(rc, t, lr, self.w_run, self.g, self.xin, self.labin)
        record_step(rc)
        if rc.stop:
            rc.stop = False
            self._stop(STOP_NONFINITE_OBJECTIVE, t)
            return False
        return True

    cdef inline void _point_recorder(self, Recorder* rc, long long t, double lr,
                                     const double* w, const double* g, const double* xin,
                                     const double* labin) noexcept nogil:
        rc.t, rc.rec, rc.lr = t, t // self.cfg.record_every - self.rec_base, lr
        rc.w, rc.g, rc.pert = w, g, self.ps
        rc.xin, rc.labin = xin, labin
        rc.pair = &self.pair if self.pairing else NULL

    cdef inline void _post_record(self, long long t, double lr) noexcept nogil:
        # snapshot what the record reads, hand it to the helper, go on with the other pass
        cdef int i
        cdef Py_ssize_t B = self.B, n_w = self.n_w
        cdef const double* xin = self.xin
        cdef const double* labin = self.labin
        if n_w > 0:
            memcpy(self.w_snap, self.w_run, n_w * sizeof(double))
            memcpy(self.g_snap, self.g, n_w * sizeof(double))
        if xin == self.xb:            # the copied samples of a minibatch
            memcpy(self.x_snap, self.xb, B * self.d0 * sizeof(double))
            if self.ldl > 0:
                memcpy(self.l_snap, self.lb, B * self.ldl * sizeof(double))
            xin, labin = self.x_snap, (self.l_snap if self.ldl > 0 else NULL)
        for i in range(4):
            self.stream_snap[i] = self.st[i].pcg
        self.nonfinite_snap = self.passes[0].n_nonfinite + self.passes[1].n_nonfinite
        self._point_recorder(self.rc, t, lr, self.w_snap, self.g_snap, xin, labin)
        fc_worker_post(self.helper)
        # this pass is the helper's until the job is done: go on with the other
        # (the rest of this step reads no pass: defer is off at recording steps)
        self.cur = 1 - self.cur
        self.ps = &self.passes[self.cur]

    cdef inline bint _gradient(self, long long t) noexcept nogil:
        # the step's gradient ~u + grad R(w) + sigma_n xi, its norm, and clipping
        cdef Py_ssize_t j, n_w = self.n_w
        cdef double gnorm, scale
        cdef double* wp = self.w_run if n_w > 0 else NULL
        cdef double* g = self.g
        reg_grad_add(self.cfg.reg_code, self.cfg.reg_scale, wp, g, n_w)
        if self.cfg.grad_noise_std > 0.0:
            normal_fill(self.bg[3], n_w, self.gnoise)
            for j in range(n_w):
                g[j] = g[j] + self.cfg.grad_noise_std * self.gnoise[j]
        if self.defer and not isfinite(self.gsumsq):
            # safe_norm_of scans g for the non-finite entry: write the deferred blocks
            write_deferred_blocks(&self.net, wp, self.ps, self.gsum)
            self.defer = False
        gnorm = safe_norm_of(self.gsumsq, g, n_w) if self.fused_gnorm else safe_norm(g, n_w)
        if not isfinite(gnorm):
            self._stop(STOP_NONFINITE_GRADIENT, t)
            return False
        if gnorm > self.cfg.max_norm:
            self._stop(STOP_GRADIENT_NORM, t)
            return False
        if self.cfg.clip_norm > 0.0 and gnorm > self.cfg.clip_norm:
            scale = self.cfg.clip_norm / gnorm
            for j in range(n_w):
                g[j] = g[j] * scale
        return True

    cdef inline const double* _next_sample(self, long long t) noexcept nogil:
        # the next step's sample when this step's update may compute f_1 there (sgd_step) and
        # the next step runs in this call: the next row of the shuffle (when it needs no new
        # one), or drawn now from the data stream, which only sampling reads (the same draws in
        # the same order; _sample takes it, _stop undraws it); else NULL
        if not (self.defer and self.first_ahead_ok and t + 1 < self.t_end):
            return NULL
        if self.cfg.sampling == SAMPLE_SHUFFLE:   # (_sample reshuffles when pos reaches M)
            return &self.X[self.perm[self.pos], 0] if self.pos < self.M else NULL
        self.data_snap = self.st[0].pcg
        random_bounded_uint64_fill(self.bg[0], 0, <uint64_t>(self.M - 1), 1, 0, &self.idx_next)
        self.next_drawn = True
        return &self.X[<Py_ssize_t>self.idx_next, 0]

    cdef inline bint _update(self, long long t, double lr) noexcept nogil:
        # the optimizer's update of w, and the weight norm check
        cdef Py_ssize_t j, n_w = self.n_w
        cdef const double* x_next
        cdef double wnorm, b1c, b2c, mhat, vhat
        cdef double* wp = self.w_run if n_w > 0 else NULL
        cdef double* g = self.g
        cdef const Config* cfg = &self.cfg
        if cfg.optimizer == OPT_SGD:
            if cfg.momentum == 0.0:
                # w - lr g, vectorised with the same roundings: (-lr) g = -(lr g); and ||w||^2
                # of the new w in the same pass (as fc_sumsq would sum it)
                x_next = self._next_sample(t)
                self.wsumsq = sgd_step(&self.net, self.ps, wp, g, -lr, self.defer, x_next)
                self.first_ready = x_next != NULL
                self.n_ahead += self.first_ready
            else:
                # heavy ball: m = beta m + g; Nesterov steps along g + beta m
                for j in range(n_w):
                    self.m1[j] = cfg.momentum * self.m1[j] + g[j]
                    if cfg.nesterov:
                        wp[j] = wp[j] - lr * (g[j] + cfg.momentum * self.m1[j])
                    else:
                        wp[j] = wp[j] - lr * self.m1[j]
        else:
            # Adam with bias correction
            b1c = 1.0 - pow(cfg.beta1, <double>(t + 1))
            b2c = 1.0 - pow(cfg.beta2, <double>(t + 1))
            for j in range(n_w):
                self.m1[j] = cfg.beta1 * self.m1[j] + (1.0 - cfg.beta1) * g[j]
                self.m2[j] = cfg.beta2 * self.m2[j] + (1.0 - cfg.beta2) * g[j] * g[j]
                mhat = self.m1[j] / b1c
                vhat = self.m2[j] / b2c
                wp[j] = wp[j] - lr * mhat / (sqrt(vhat) + cfg.adam_eps)
        wnorm = safe_norm_of(self.wsumsq, wp, n_w) if self.fused_wnorm else safe_norm(wp, n_w)
        if not isfinite(wnorm):
            self._stop(STOP_NONFINITE_WEIGHTS, t)
            return False
        if wnorm > cfg.max_norm:
            self._stop(STOP_WEIGHT_NORM, t)
            return False
        return True

    cdef void _settle(self) noexcept nogil:
        # the helper's last record is done; when it stopped the run, the run ends at its step
        if not self.concurrent:
            return
        fc_worker_wait(self.helper)
        if self.rc.stop:
            self._rollback()

    cdef void _rollback(self) noexcept nogil:
        # The helper's record at step rc.t found a non-finite objective: the run ends there, as
        # it does serially, with w_t, the streams as they were there, and no record after it
        # (the records this thread made meanwhile are cleared).
        cdef int i
        cdef Recorder* rc = self.rc
        cdef Py_ssize_t k, j, N = self.net.N
        rc.stop = False
        self._stop(STOP_NONFINITE_OBJECTIVE, rc.t)
        if self.n_w > 0:
            memcpy(self.w_run, self.w_snap, self.n_w * sizeof(double))
        for i in range(4):
            self.st[i].pcg = self.stream_snap[i]
        self.passes[0].n_nonfinite, self.passes[1].n_nonfinite = self.nonfinite_snap, 0
        for k in range(rc.rec + 1, self.inline_hi):
            rc.h_objective[k] = rc.h_grad_norm[k] = rc.h_grad_error[k] = NAN
            rc.h_step_size[k] = NAN
            if self.cfg.record_profile:
                for j in range(N):
                    rc.h_forward_error[k * N + j] = rc.h_backward_error[k * N + j] = NAN
            if rc.h_weights != NULL:
                for j in range(self.n_w):
                    rc.h_weights[k * self.n_w + j] = NAN
        self.inline_hi = 0

    def weights(self):
        """The live weight vector of the run (a NumPy view: the next steps change it).

        Returns
        -------
        numpy.ndarray (n_weights,)
        """
        return self.w_owner[:self.n_w]

    def nonfinite(self):
        """The (step, site) pairs so far at which a perturbation left a non-finite value.

        Returns
        -------
        int
        """
        return self.passes[0].n_nonfinite + self.passes[1].n_nonfinite

    def close(self, double[::1] w=None):
        """Write the weights into ``w`` (when given) and the streams back into their
        generators (which continue where the run stopped); free everything. Idempotent."""
        if w is not None and self.n_w > 0 and self.w_run != NULL:
            memcpy(&w[0], self.w_run, self.n_w * sizeof(double))
        self._free()
        if self.streams_open:
            self.streams_open = False
            close_streams(self.streams, self.generators)

    cdef void _free(self) noexcept:
        fc_worker_stop(self.helper)   # before the buffers it uses go
        self.helper = NULL
        free(self.rec_block)
        free(self.rec_block2)
        free(self.x_snap)
        free(self.l_snap)
        free(self.vecs)
        free(self.perm)
        free(self.idx)
        self.vecs = self.x_snap = self.l_snap = NULL
        self.rec_block = self.rec_block2 = NULL
        self.perm = NULL
        self.idx = NULL
        self.rc = self.rc_inline = NULL
        pass_free(&self.passes[0])
        pass_free(&self.passes[1])
        pass_free(&self.full)
        pass_free(&self.cleanb)
        pass_free(&self.full2)
        pass_free(&self.cleanb2)
        if self.sites_ready:
            sites_free(&self.sites)
            self.sites_ready = False
        net_free(&self.net)

    def __dealloc__(self):
        self._free()


cdef inline void _same_histories(Recorder* dst, const Recorder* src) noexcept:
    dst.h_objective, dst.h_grad_norm = src.h_objective, src.h_grad_norm
    dst.h_grad_error, dst.h_step_size = src.h_grad_error, src.h_step_size
    dst.h_forward_error, dst.h_backward_error = src.h_forward_error, src.h_backward_error
    dst.h_weights = src.h_weights


cdef inline void _pass_clear(Pass* ps) noexcept:
    ps.n_nonfinite = 0
    ps.block = NULL
    ps.a = ps.y = ps.ybuf = ps.v = NULL


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
    cdef long long n_iter = config["n_iter"], every = config["record_every"]
    if every < 1 or h_objective.shape[0] != (n_iter + every - 1) // every:
        raise ValueError("run_one: the histories need one entry per record, ceil(n_iter / "
                         f"record_every), given {h_objective.shape[0]} for n_iter = {n_iter}, "
                         f"record_every = {every}")
    state = RunState(op_table, params, X, Y, w, config, pert_int, pert_real, pert_times,
                     (data_gen, forward_gen, backward_gen, grad_gen))
    try:
        state.set_histories(0, h_objective, h_grad_norm, h_grad_error, h_step_size,
                            h_forward_error, h_backward_error, h_weights)
        state.advance(n_iter)
        concurrent = state.concurrent
    finally:
        if h_nonfinite is not None and h_nonfinite.shape[0] > 0:
            h_nonfinite[0] = state.nonfinite()
        state.close(w)
    return state.stop_iter, state.stop, bool(concurrent)


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
            forward_pass(&net, wp, &pert, &X[0, 0], lab, ldl, &sites, t, bg_fwd, scratch, False)
            backward_pass(&net, wp, &pert, lab, ldl, &sites, t, bg_bwd, scratch,
                          &g_perturbed[0] if net.n_w > 0 else NULL, False, NULL)
            forward_pass(&net, wp, &clean, &X[0, 0], lab, ldl, NULL, 0, NULL, NULL, False)
            backward_pass(&net, wp, &clean, lab, ldl, NULL, 0, NULL, NULL,
                          &g_clean[0] if net.n_w > 0 else NULL, False, NULL)
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
