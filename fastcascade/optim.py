"""Optimizers and where their gradients come from (full batch or minibatches).

The step gradient is g_t = ~u_t + grad R(w_t) + sigma_n xi_t (docs/model.md sec. 2,
xi_t ~ N(0, I)), optionally clipped to a global norm, then:

- ``SGD``: w <- w - gamma_t g (``momentum=0``); heavy ball m <- beta m + g, w <- w - gamma_t m
  (equal to the paper's w_{t+1} = w_t - gamma g_t + beta (w_t - w_{t-1}) for constant gamma);
  Nesterov w <- w - gamma_t (g + beta m).
- ``Adam``: the usual bias-corrected moments.

Examples
--------
>>> import fastcascade as fc
>>> fc.SGD(step_size=0.05, batch="full", grad_noise_std=1e-3)
SGD(step_size=0.05, batch='full', grad_noise_std=0.001, momentum=0.0, nesterov=False, schedule=Constant(), clip_norm=None, sampling='replacement')
"""
from __future__ import annotations

import inspect
from typing import Any, TypeVar

from fastcascade._validation import check_choice, check_positive_int, check_real
from fastcascade.schedules import Constant, Schedule

_O = TypeVar("_O", bound="Optimizer")

__all__ = ["Optimizer", "SGD", "Adam"]

SAMPLINGS = ("replacement", "shuffle")


class Optimizer:
    """Common settings: step size and schedule, gradient source, gradient noise, clipping.

    Parameters
    ----------
    step_size : float > 0
        g0, the step size at t = 0.
    batch : "full" or int
        "full": every sample at every step (the paper's protocol); an int B: minibatches of B.
    grad_noise_std : float >= 0
        sigma_n of the Gaussian noise added to the step gradient.
    schedule : fastcascade.schedules.Schedule, default Constant()
    clip_norm : float > 0 or None
        Clip the step gradient to this global norm.
    sampling : {"replacement", "shuffle"}
        Minibatches drawn with replacement, or consecutive slices of a fresh permutation per
        epoch (an epoch ends when fewer than B unseen samples remain).
    """

    name: str | None = None

    def __init__(self, step_size: float, batch: str | int = "full", grad_noise_std: float = 0.0,
                 schedule: Schedule | None = None, clip_norm: float | None = None,
                 sampling: str = "replacement"):
        self.step_size = check_real(step_size, "step_size", type(self).__name__, low=0.0,
                                    low_open=True)
        if batch != "full":
            batch = check_positive_int(batch, "batch", type(self).__name__)
        self.batch: int | str = batch
        self.grad_noise_std = check_real(grad_noise_std, "grad_noise_std", type(self).__name__,
                                         low=0.0)
        schedule = Constant() if schedule is None else schedule
        if not isinstance(schedule, Schedule):
            raise ValueError(f"{type(self).__name__}: schedule: expected a "
                             f"fastcascade.schedules.Schedule, given {schedule!r}")
        self.schedule = schedule
        if clip_norm is not None:
            clip_norm = check_real(clip_norm, "clip_norm", type(self).__name__, low=0.0,
                                   low_open=True)
        self.clip_norm = clip_norm
        self.sampling = check_choice(sampling, "sampling", SAMPLINGS, type(self).__name__)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The constructor's parameter names, in order: the keys ``replace`` and ``fc.sweep``
        grids accept for this optimizer.

        Returns
        -------
        tuple of str

        Examples
        --------
        >>> import fastcascade as fc
        >>> fc.SGD.fields()[:3]
        ('step_size', 'batch', 'grad_noise_std')
        """
        params = inspect.signature(cls.__init__).parameters
        return tuple(name for name in params if name != "self")

    def replace(self: _O, **changes: Any) -> _O:
        """A validated copy with some constructor fields changed.

        Parameters
        ----------
        **changes
            New values for any of ``fields()``; the constructor checks them all again.

        Returns
        -------
        Optimizer
            A new object of the same class; ``self`` is left as it is.

        Raises
        ------
        ValueError
            For a key that is not a constructor field (the message names it and lists the
            fields), or an invalid value (the constructor's message).

        Examples
        --------
        >>> import fastcascade as fc
        >>> opt = fc.SGD(step_size=0.1, grad_noise_std=1e-3)
        >>> opt.replace(step_size=0.01, momentum=0.9).momentum
        0.9
        >>> opt.step_size
        0.1
        """
        fields = self.fields()
        for key in changes:
            if key not in fields:
                raise ValueError(f"{type(self).__name__}: {key}: not a field of this optimizer; "
                                 f"expected one of {', '.join(fields)}")
        kwargs = {name: getattr(self, name) for name in fields}
        kwargs.update(changes)
        return type(self)(**kwargs)

    def step_size_at(self, t: int) -> float:
        """gamma_t = step_size * schedule.factor(t).

        Parameters
        ----------
        t : int
            The 0-based iteration.

        Returns
        -------
        float
        """
        return self.step_size * self.schedule.factor(t)

    def batch_size(self, n_samples: int) -> int:
        """The number of samples per step for a data set of ``n_samples``.

        Parameters
        ----------
        n_samples : int
            Samples in the problem's data.

        Returns
        -------
        int
            ``n_samples`` for ``batch="full"``, else ``batch`` (ValueError when shuffled epochs
            would need ``batch > n_samples``).
        """
        if isinstance(self.batch, str):  # "full"
            return n_samples
        if self.batch > n_samples and self.sampling == "shuffle":
            raise ValueError(f"{type(self).__name__}: batch: shuffled epochs need batch <= "
                             f"n_samples ({n_samples}), given {self.batch}")
        return self.batch

    def engine_config(self) -> dict[str, Any]:
        """The settings the compiled engine reads.

        Returns
        -------
        dict
            ``optimizer``, ``step_size``, ``sampling`` ("full" for full batches), ``batch`` (0 for
            full), ``grad_noise_std``, ``clip_norm`` (0.0 for none), the momentum and Adam slots
            (0 here) and the schedule's keys (``Schedule.engine_config``).
        """
        cfg = {"optimizer": self.name, "step_size": self.step_size,
               "sampling": "full" if self.batch == "full" else self.sampling,
               "batch": 0 if self.batch == "full" else self.batch,
               "grad_noise_std": self.grad_noise_std,
               "clip_norm": 0.0 if self.clip_norm is None else self.clip_norm,
               "momentum": 0.0, "nesterov": 0, "beta1": 0.0, "beta2": 0.0, "adam_eps": 0.0}
        cfg.update(self.schedule.engine_config())
        return cfg

    def _common_repr(self):
        return (f"batch={self.batch!r}, grad_noise_std={self.grad_noise_std!r}")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__, self.step_size))


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with heavy-ball or Nesterov momentum.

    Parameters
    ----------
    step_size : float > 0
        g0, the step size at t = 0.
    batch : "full" or int, default "full"
        "full": every sample at every step (the paper's protocol); an int B: minibatches of B.
    grad_noise_std : float >= 0, default 0.0
        sigma_n of the Gaussian noise added to the step gradient (gradient-noise stream).
    schedule : fastcascade.schedules.Schedule, default Constant()
        gamma_t = step_size * schedule.factor(t).
    clip_norm : float > 0 or None, default None
        Clip the step gradient to this global norm.
    sampling : {"replacement", "shuffle"}, default "replacement"
        Minibatches drawn with replacement, or consecutive slices of a fresh permutation per
        epoch (an epoch ends when fewer than B unseen samples remain).
    momentum : float in [0, 1), default 0.0
        beta of the heavy-ball update m <- beta m + g.
    nesterov : bool, default False
        Nesterov's update w <- w - gamma_t (g + beta m); needs ``momentum > 0``.
    """

    name = "sgd"

    def __init__(self, step_size: float, batch: str | int = "full", grad_noise_std: float = 0.0,
                 momentum: float = 0.0, nesterov: bool = False, schedule: Schedule | None = None,
                 clip_norm: float | None = None, sampling: str = "replacement"):
        super().__init__(step_size, batch, grad_noise_std, schedule, clip_norm, sampling)
        self.momentum = check_real(momentum, "momentum", "SGD", low=0.0, high=0.999999)
        if not isinstance(nesterov, bool):
            raise ValueError(f"SGD: nesterov: expected True or False, given {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("SGD: nesterov: needs momentum > 0, given momentum=0")
        self.nesterov = nesterov

    def engine_config(self) -> dict[str, Any]:
        """The settings the compiled engine reads: those of :meth:`Optimizer.engine_config` with
        ``momentum`` and ``nesterov`` (0 or 1) set.

        Returns
        -------
        dict
        """
        cfg = super().engine_config()
        cfg.update(momentum=self.momentum, nesterov=int(self.nesterov))
        return cfg

    def __repr__(self):
        return (f"SGD(step_size={self.step_size!r}, {self._common_repr()}, "
                f"momentum={self.momentum!r}, nesterov={self.nesterov!r}, "
                f"schedule={self.schedule!r}, clip_norm={self.clip_norm!r}, "
                f"sampling={self.sampling!r})")


class Adam(Optimizer):
    """Adam (Kingma and Ba), with bias correction.

    Parameters
    ----------
    step_size : float > 0, default 1e-3
        g0, the step size at t = 0.
    batch : "full" or int, default "full"
        "full": every sample at every step (the paper's protocol); an int B: minibatches of B.
    grad_noise_std : float >= 0, default 0.0
        sigma_n of the Gaussian noise added to the step gradient (gradient-noise stream).
    schedule : fastcascade.schedules.Schedule, default Constant()
        gamma_t = step_size * schedule.factor(t).
    clip_norm : float > 0 or None, default None
        Clip the step gradient to this global norm.
    sampling : {"replacement", "shuffle"}, default "replacement"
        Minibatches drawn with replacement, or consecutive slices of a fresh permutation per
        epoch (an epoch ends when fewer than B unseen samples remain).
    betas : (float, float) in [0, 1), default (0.9, 0.999)
        Decay factors of the first and second moment estimates.
    eps : float > 0, default 1e-8
        Added to the square root of the second moment.
    """

    name = "adam"

    def __init__(self, step_size: float = 1e-3, batch: str | int = "full",
                 grad_noise_std: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, schedule: Schedule | None = None,
                 clip_norm: float | None = None, sampling: str = "replacement"):
        super().__init__(step_size, batch, grad_noise_std, schedule, clip_norm, sampling)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas: expected a pair of floats in [0, 1), given {betas!r}")
        self.betas = (check_real(betas[0], "betas[0]", "Adam", low=0.0, high=0.999999),
                      check_real(betas[1], "betas[1]", "Adam", low=0.0, high=0.999999))
        self.eps = check_real(eps, "eps", "Adam", low=0.0, low_open=True)

    def engine_config(self) -> dict[str, Any]:
        """The settings the compiled engine reads: those of :meth:`Optimizer.engine_config` with
        ``beta1``, ``beta2`` and ``adam_eps`` set.

        Returns
        -------
        dict
        """
        cfg = super().engine_config()
        cfg.update(beta1=self.betas[0], beta2=self.betas[1], adam_eps=self.eps)
        return cfg

    def __repr__(self):
        return (f"Adam(step_size={self.step_size!r}, {self._common_repr()}, betas={self.betas!r}, "
                f"eps={self.eps!r}, schedule={self.schedule!r}, clip_norm={self.clip_norm!r}, "
                f"sampling={self.sampling!r})")
