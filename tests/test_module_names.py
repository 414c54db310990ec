"""No module of the package is shadowed by a name in the package namespace (issue 13.4).

``fastcascade.run`` and ``fastcascade.sweep`` used to be both modules and the functions
``fc.run`` / ``fc.sweep``; ``import fastcascade.sweep`` then gave the function.
"""
import importlib
import pkgutil
import types

import fastcascade as fc


def _submodules():
    return [m.name for m in pkgutil.iter_modules(fc.__path__)]


def test_every_package_attribute_named_like_a_module_is_that_module():
    shadowed = []
    for name in _submodules():
        module = importlib.import_module(f"fastcascade.{name}")
        attr = getattr(fc, name, module)
        if attr is not module:
            shadowed.append(f"fastcascade.{name} is {type(attr).__name__} {attr!r}")
    assert not shadowed, shadowed


def test_run_and_sweep_are_functions_from_their_own_modules():
    assert isinstance(fc.run, types.FunctionType) and fc.run.__module__ == "fastcascade.runner"
    assert isinstance(fc.sweep, types.FunctionType) and fc.sweep.__module__ == "fastcascade.sweeper"
    assert "run" not in _submodules() and "sweep" not in _submodules()
