/* fastcascade's compiled extension point: an operator implemented in C or Cython.
 *
 * A user's extension module fills one fc_operator with its own nogil functions and hands it to
 * fastcascade in a PyCapsule named FC_OPERATOR_CAPSULE (see fastcascade/extension.pxd, and the
 * example package under examples/compiled_operator). The engine calls the functions without
 * the GIL, on raw row-major float64 buffers of a batch of B samples:
 *
 *   forward(ctx, w, x, y, B, d_in, d_out)          y  = f(x, w)              (B x d_out, written)
 *   vjp_input(ctx, w, x, y, v, dx, B, d_in, d_out)  dx = J1(x_s)^T v_s       (B x d_in, written)
 *   vjp_weights(ctx, w, x, y, v, dw, B, d_in, d_out) dw += sum_s J2(x_s)^T v_s (n_w, ADDED TO)
 *
 * w: the operator's n_w weights (NULL when it has none); y = forward(x) (the operator's own
 * output, before any perturbation at its site); v: the output cotangent (B x d_out). vjp_weights
 * may be NULL for an operator without weights. The functions must not fail, allocate only what
 * they free, touch only these buffers (and ctx), be thread-safe (runs execute in parallel
 * threads) and deterministic. ctx points at data the Python object owns for as long as it lives.
 */
#ifndef FASTCASCADE_OPERATOR_H
#define FASTCASCADE_OPERATOR_H

#include <Python.h>

#define FC_OPERATOR_ABI 1
#define FC_OPERATOR_CAPSULE "fastcascade.operator"

typedef void (*fc_forward_fn)(const void *ctx, const double *w, const double *x, double *y,
                              Py_ssize_t B, Py_ssize_t d_in, Py_ssize_t d_out);
typedef void (*fc_vjp_fn)(const void *ctx, const double *w, const double *x, const double *y,
                          const double *v, double *out, Py_ssize_t B, Py_ssize_t d_in,
                          Py_ssize_t d_out);

typedef struct fc_operator {
    int abi;                    /* FC_OPERATOR_ABI */
    const void *ctx;            /* passed back to each function */
    fc_forward_fn forward;
    fc_vjp_fn vjp_input;
    fc_vjp_fn vjp_weights;      /* NULL: no weights */
} fc_operator;

#endif
