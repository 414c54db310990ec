"""A perturbation: which noise, where (operator and pass), when, how large, how many draws.

Semantics (Eq. 5, docs/model.md sec. 2):
``pass_="forward"`` at ``op=i`` adds delta_i to the output of f_i;
``pass_="backward"`` at ``op=i`` adds eps_i to the message f_i sends back to f_{i-1}, so it
needs i >= 2. Several perturbations at the same site apply in the order given.

Examples
--------
>>> import fastcascade as fc
>>> fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(0.0, 0.3),
...                 timing=fc.timing.Every(100))
Perturbation(op=2, pass_='backward', noise=Uniform(low=0.0, high=0.3), timing=Every(100, offset=0), granularity='element')
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels import _noise
from fastcascade._validation import as_list_of, check_choice, check_instance, check_positive_int
from fastcascade.errors import ParameterError
from fastcascade.magnitude import Fixed, Magnitude
from fastcascade.noise import Noise
from fastcascade.timing import Always, Timing

__all__ = ["Perturbation", "perturbation_tables", "check_perturbations", "check_widths"]

PASSES = ("forward", "backward")
GRANULARITIES = ("element", "sample", "step")


class Perturbation:
    """Noise injected at one site of the cascade.

    Parameters
    ----------
    op : int
        1-based operator index i.
    pass_ : {"forward", "backward"}
        "forward": delta_i after f_i. "backward": eps_i on the message from f_i to f_{i-1}.
    noise : fastcascade.noise.Noise
        A distribution (added, or multiplied with ``Relative``) or a transform (quantiser,
        compressor, bit flips).
    timing : fastcascade.timing.Timing, default Always()
    granularity : {"element", "sample", "step"}, default "element"
        For distributions: "element", an independent draw per sample and coordinate; "sample",
        one draw per sample shared by its coordinates; "step", one vector of d_i draws shared by
        every sample of the step (for a scalar site, one draw per step). Transforms act per
        element or per sample by definition and take "element".
    magnitude : fastcascade.magnitude.Magnitude, default Fixed(1.0)
        Multiplies a distribution's draws by m_t (decaying perturbations, Corollary 1).
    """

    def __init__(self, op: int, pass_: str = "forward", noise: Noise | None = None,
                 timing: Timing | None = None, granularity: str = "element",
                 magnitude: Magnitude | None = None):
        self.op = check_positive_int(op, "op", "Perturbation")
        self.pass_ = check_choice(pass_, "pass_", PASSES, "Perturbation")
        if self.pass_ == "backward" and self.op < 2:
            raise ParameterError("op", op, "an operator index >= 2 for pass_='backward' (a "
                                 "backward perturbation at op=i perturbs the message f_i sends "
                                 "to f_{i-1})", "Perturbation")
        self.noise = check_instance(noise, "noise", Noise, "a fastcascade.noise kind",
                                    "Perturbation")
        timing = Always() if timing is None else timing
        self.timing = check_instance(timing, "timing", Timing, "a fastcascade.timing kind",
                                     "Perturbation")
        self.granularity = check_choice(granularity, "granularity", GRANULARITIES,
                                        "Perturbation")
        if self.noise.is_python and granularity != "element":
            raise ParameterError("granularity", granularity, f"'element' ({self.noise!r} is a "
                                 "Python-defined noise: it draws for the whole block)",
                                 "Perturbation")
        if self.noise.is_transform and granularity != "element":
            raise ParameterError("granularity", granularity, f"'element' ({noise!r} is a "
                                 "transform)", "Perturbation")
        magnitude = Fixed() if magnitude is None else magnitude
        check_instance(magnitude, "magnitude", Magnitude, "a fastcascade.magnitude kind",
                       "Perturbation")
        if self.noise.is_transform and magnitude != Fixed():
            raise ParameterError("magnitude", magnitude, f"none ({noise!r} is a transform and "
                                 "has no magnitude)", "Perturbation")
        self.magnitude = magnitude

    @property
    def backward(self) -> bool:
        """True for ``pass_="backward"`` (eps_i on a message), False for forward."""
        return self.pass_ == "backward"

    def site(self, n_ops: int) -> int:
        """The engine's site index: i for forward, N + i for backward.

        Parameters
        ----------
        n_ops : int
            N, the number of operators of the cascade.

        Returns
        -------
        int
            In 1..2N; the engine applies perturbations in increasing site order.
        """
        return self.op + (n_ops if self.backward else 0)

    def apply(self, z: np.ndarray, gen: np.random.Generator, t: int = 0,
              n_iter: int | None = None) -> np.ndarray:
        """NumPy twin of the kernel: z perturbed at iteration t, drawing from ``gen``.

        The timing is not checked here (see ``timing.active``). A transform returns Q(z); a
        distribution adds ``m_t draws`` (or multiplies by ``1 + m_t draws`` for ``Relative``), with
        the draws shaped by ``granularity``: (B, d), one per sample, or one d-vector per step (Eq.
        5, docs/model.md sec. 2).

        Parameters
        ----------
        z : numpy.ndarray
            float64 (B, d): the site's values for the B samples of the step.
        gen : numpy.random.Generator
            The stream of the pass: forward noise for a forward site, backward noise for a
            backward one (docs/model.md sec. 3).
        t : int, default 0
            The 0-based iteration, for the magnitude m_t.
        n_iter : int, optional
            The horizon T (needed by ``HorizonDecay``).

        Returns
        -------
        numpy.ndarray
            float64 (B, d), a new array.
        """
        if self.noise.is_transform:
            return self.noise.transform(z, gen)
        B, d = z.shape
        m = self.magnitude.factor(t, n_iter)
        if self.noise.is_python:
            # z + m_t delta, delta = draw(gen, z) on a read-only view (as the kernel's callback)
            x = z.view()
            x.flags.writeable = False
            delta = np.asarray(self.noise.draw(gen, x), dtype=np.float64)
            if delta.shape != (B, d):
                raise ValueError(f"{self.noise!r}.draw: returned shape {delta.shape}, "
                                 f"expected {(B, d)}")
            return z + m * delta
        if self.granularity == "element":
            draws = m * self.noise.draw(gen, (B, d))
        elif self.granularity == "sample":
            draws = (m * self.noise.draw(gen, (B,)))[:, None]
        else:
            draws = (m * self.noise.draw(gen, (d,)))[None, :]
        if self.noise.mode == "relative":
            return z * (1.0 + draws)
        return z + draws

    def __repr__(self):
        extra = "" if self.magnitude == Fixed() else f", magnitude={self.magnitude!r}"
        return (f"Perturbation(op={self.op}, pass_={self.pass_!r}, noise={self.noise!r}, "
                f"timing={self.timing!r}, granularity={self.granularity!r}{extra})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Perturbation) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((self.op, self.pass_, self.noise, self.timing, self.granularity,
                     self.magnitude))


def check_perturbations(perturbations, n_ops):
    """A list of perturbations, each checked against a cascade of ``n_ops`` operators.

    Parameters
    ----------
    perturbations : Perturbation, sequence of Perturbation, or None
        None gives an empty list.
    n_ops : int
        N; each ``op`` must be in 1..N (else ParameterError naming ``perturbations[k].op``).

    Returns
    -------
    list of Perturbation
        In the user's order.
    """
    if perturbations is None:
        return []
    perts = as_list_of(perturbations, "perturbations", Perturbation,
                       "a sequence of fastcascade.Perturbation")
    for k, p in enumerate(perts):
        check_instance(p, f"perturbations[{k}]", Perturbation, "a fastcascade.Perturbation")
        if p.op > n_ops:
            raise ParameterError(f"perturbations[{k}].op", p.op,
                                 f"an operator index in 1..{n_ops}")
    return perts


def site_width(perturbation, dims):
    """The width of the block a perturbation strikes: d_i after f_i (forward), d_{i-1} for the
    message f_i sends back (backward).

    Parameters
    ----------
    perturbation : Perturbation
        The perturbation.
    dims : sequence of int
        (d_0, ..., d_N), the cascade's ``dims``.

    Returns
    -------
    int
    """
    return dims[perturbation.op - 1] if perturbation.backward else dims[perturbation.op]


def check_widths(perturbations, dims):
    """Refuse compressors that keep more entries than their site has (``TopK``/``RandK`` with
    k > d), once the widths are known.

    Parameters
    ----------
    perturbations : sequence of Perturbation
        In the user's order, so that the ParameterError names the user's index
        (``perturbations[k].noise.k``).
    dims : sequence of int
        (d_0, ..., d_N), the cascade's ``dims``.
    """
    for k, p in enumerate(perturbations):
        kept = getattr(p.noise, "k", None)
        if p.noise.is_transform and kept is not None:
            d = site_width(p, dims)
            if kept > d:
                where = "message to" if p.backward else "output of"
                name = "f_{}".format(p.op - 1 if p.backward else p.op)
                raise ParameterError(f"perturbations[{k}].noise.k", kept,
                                     f"k <= {d}, the width of the {p.pass_} site (the "
                                     f"{where} {name})")


def sort_by_site(perturbations, n_ops):
    """Stable sort by site: the order the engine applies them (user order within a site).

    Parameters
    ----------
    perturbations : sequence of Perturbation
        Checked perturbations.
    n_ops : int
        N, for :meth:`Perturbation.site`.

    Returns
    -------
    list of Perturbation
    """
    return sorted(perturbations, key=lambda p: p.site(n_ops))


def perturbation_tables(perturbations, n_ops, n_iter=None):
    """The engine's tables, rows sorted by site (see ``fastcascade/_kernels/_noise.pxd``).

    Parameters
    ----------
    perturbations : sequence of Perturbation
        Checked perturbations, in any order.
    n_ops : int
        N, the number of operators.
    n_iter : int, optional
        The horizon T, needed by ``HorizonDecay`` magnitudes.

    Returns
    -------
    pint : numpy.ndarray
        int64 (N_p, 11): op, backward, noise code, granularity, timing code, t_a, t_b, mode,
        aux, aux2, magnitude code.
    preal : numpy.ndarray
        float64 (N_p, 7): the noise's four parameters, the timing probability, the magnitude's
        kernel scale and alpha.
    times : numpy.ndarray
        int64: the iterations of every ``At`` timing, concatenated (rows point into it).
    """
    perts = sort_by_site(perturbations, n_ops)
    pint = np.zeros((len(perts), _noise.INT_FIELDS), dtype=np.int64)
    preal = np.zeros((len(perts), _noise.REAL_FIELDS), dtype=np.float64)
    times = []
    for k, p in enumerate(perts):
        t_a, t_b, prob = p.timing.table(times)
        aux, aux2 = p.noise.aux()
        ints = {"op": p.op, "backward": int(p.backward), "kind": p.noise.code,
                "granularity": _noise.GRANULARITY_CODES[p.granularity],
                "timing": p.timing.code, "t_a": t_a, "t_b": t_b,
                "mode": _noise.MODE_CODES[p.noise.mode], "aux": aux, "aux2": aux2,
                "magnitude": p.magnitude.code}
        reals = dict(zip(("p0", "p1", "p2", "p3"), p.noise.params()))
        reals.update(prob=prob, scale=p.magnitude.kernel_scale(n_iter), alpha=p.magnitude.alpha)
        # the columns the kernels read (_noise.pxd), by name
        for name, value in ints.items():
            pint[k, _noise.PERT_INT_COLUMNS[name]] = value
        for name, value in reals.items():
            preal[k, _noise.PERT_REAL_COLUMNS[name]] = value
    return pint, preal, np.asarray(times, dtype=np.int64)
