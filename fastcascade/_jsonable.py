"""Plain JSON data from the package's objects: configurations and seeds.

A module of the bottom floor, so that ``result`` (below ``io``) and ``io`` share it;
``fastcascade.io`` re-exports every name.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["jsonable", "seed_to_json", "seed_from_json"]


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data: dicts (str keys), lists, str, int, float, bool, None.

    Tuples become lists, NumPy scalars Python numbers, a ``SeedSequence`` a dict, small arrays
    lists, large arrays a short description, any other object its ``repr``.

    Parameters
    ----------
    obj : object
        Anything; containers are converted recursively.

    Returns
    -------
    dict, list, str, int, float, bool or None

    Examples
    --------
    >>> import numpy as np
    >>> from fastcascade.io import jsonable
    >>> jsonable({"a": (1, np.float64(0.5)), "b": np.arange(3)})
    {'a': [1, 0.5], 'b': [0, 1, 2]}
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.random.SeedSequence):
        return seed_to_json(obj)
    if isinstance(obj, np.ndarray):
        if obj.size <= 64 and obj.dtype.kind in "biuf":
            return jsonable(obj.tolist())
        return f"array(shape={obj.shape}, dtype={obj.dtype})"
    return repr(obj)


def seed_to_json(seed: int | np.random.SeedSequence) -> int | dict[str, Any]:
    """An int seed as itself; a SeedSequence as a dict that rebuilds it.

    Parameters
    ----------
    seed : int or numpy.random.SeedSequence
        A run's seed.

    Returns
    -------
    int or dict
        ``{"SeedSequence": {"entropy", "spawn_key", "pool_size"}}`` for a SeedSequence.
    """
    if isinstance(seed, np.random.SeedSequence):
        entropy: Any = seed.entropy
        entropy = [int(e) for e in entropy] if isinstance(entropy, (list, tuple, np.ndarray)) \
            else int(entropy)
        return {"SeedSequence": {"entropy": entropy, "spawn_key": [int(k) for k in seed.spawn_key],
                                 "pool_size": int(seed.pool_size)}}
    return int(seed)


def seed_from_json(value: Any) -> int | np.random.SeedSequence:
    """The seed that :func:`seed_to_json` wrote: an int, or the SeedSequence it describes.

    Parameters
    ----------
    value : int or dict
        Anything else (a bool included) raises ValueError.

    Returns
    -------
    int or numpy.random.SeedSequence
    """
    if isinstance(value, dict):
        s = value["SeedSequence"]
        return np.random.SeedSequence(s["entropy"], spawn_key=tuple(s["spawn_key"]),
                                      pool_size=s["pool_size"])
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an int seed, given {value!r}")
    return value
