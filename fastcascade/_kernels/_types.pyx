# cython: language_level=3
"""The shared enums of ``_types.pxd``, exported to Python (``OpCode``, an IntEnum).

The module holds no code: it exists so that the ``cpdef enum`` of the ``.pxd`` is importable,
and every operator code can be enumerated from the compiled side (``tests/test_registry.py``).
"""
