"""Type aliases of the public signatures."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Union

import numpy as np
import numpy.typing as npt

__all__ = ["PathLike", "Seed", "Seeds", "Init"]

#: a file or folder name
PathLike = Union[str, "os.PathLike[str]"]
#: one run's seed
Seed = Union[int, np.random.SeedSequence]
#: the seeds of ``fc.run`` and ``fc.sweep``: one seed, or an iterable of them
Seeds = Union[int, np.random.SeedSequence, Iterable[Union[int, np.random.SeedSequence]]]
#: ``init`` of ``fc.run``: None, "zeros", "random", an array, or ``init(seed) -> array``
Init = Union[npt.ArrayLike, Callable[[Seed], npt.ArrayLike], None]
