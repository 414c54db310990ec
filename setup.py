"""Build the Cython kernels of fastcascade.

Environment switches (read at build time):

FASTCASCADE_DEBUG=1     Cython's bounds and wraparound checks on memoryviews, and AddressSanitizer
                        on the raw-pointer kernels (-fsanitize=address -O1 -g): the debug build the
                        test suite must also pass under (``.ci/run`` builds it once). Run it with
                        the sanitizer preloaded: LD_PRELOAD=$(gcc -print-file-name=libasan.so)
                        ASAN_OPTIONS=detect_leaks=0 pytest
FASTCASCADE_ANNOTATE=1  write Cython's annotated HTML next to each .pyx (yellow = Python calls).
FASTCASCADE_NATIVE=1    tune for the building machine (-march=native); portable by default (the
                        portable build still runs the AVX2+FMA variant of the vector kernels of
                        _fastmath.h on CPUs that have it, chosen at import).
"""
import os
import sysconfig
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _flag("FASTCASCADE_DEBUG")
ANNOTATE = _flag("FASTCASCADE_ANNOTATE")
NATIVE = _flag("FASTCASCADE_NATIVE")

# Compiler directives are set here once, for every kernel.
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "infer_types": True,
    "embedsignature": True,
}

numpy_root = Path(np.get_include()).parent.parent  # .../numpy
library_dirs = [str(numpy_root / "random" / "lib"), str(numpy_root / "_core" / "lib")]
libraries = ["npyrandom", "npymath", "m"]

link_args = []
if sysconfig.get_platform().startswith("win"):
    compile_args = ["/O2"] if not DEBUG else ["/Od"]
else:
    if DEBUG:
        compile_args = ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
        link_args = ["-fsanitize=address", "-pthread"]
    else:
        compile_args = ["-O3"]
        link_args = ["-pthread"]
        if NATIVE:
            compile_args.append("-march=native")
    # _fastmath.h passes 4-double vectors between inline functions of its baseline (SSE2)
    # variant; GCC notes that such a function's ABI would differ with AVX. They are static and
    # always inlined, so there is no ABI to keep: silence the note.
    compile_args.append("-Wno-psabi")
    compile_args.append("-pthread")  # _worker.h: a run's recording thread

# Written into the extension so that `fastcascade info` can say what is installed.
build_macros = [
    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
    ("FASTCASCADE_BUILD_DEBUG", "1" if DEBUG else "0"),
    ("FASTCASCADE_BUILD_NATIVE", "1" if NATIVE else "0"),
]


# The C headers (vector kernels, inlined PCG64) the extensions include: a change must rebuild them.
C_HEADERS = ["fastcascade/_kernels/_fastmath.h", "fastcascade/_kernels/_fastmath_impl.h",
             "fastcascade/_kernels/_fastmath_elem.h", "fastcascade/_kernels/_fastmath_avx512.h",
             "fastcascade/_kernels/_pcg64.h", "fastcascade/_kernels/_worker.h",
             "fastcascade/_kernels/_interrupt.h", "fastcascade/_kernels/_ziggurat.h"]


def kernel(name, extra_args=()):
    return Extension(
        f"fastcascade._kernels.{name}",
        [f"fastcascade/_kernels/{name}.pyx"],
        include_dirs=[np.get_include(), "fastcascade/_kernels", "fastcascade/include"],
        library_dirs=library_dirs,
        libraries=libraries,
        define_macros=build_macros,
        extra_compile_args=compile_args + list(extra_args),
        extra_link_args=link_args,
        depends=C_HEADERS,
    )


# The noise kernels add numpy's draws with numpy's roundings (a multiply, then an add): no FMA
# contraction, also in the native build and in the AVX2 draws of _pcg64.h.
NO_CONTRACTION = [] if sysconfig.get_platform().startswith("win") else ["-ffp-contract=off"]
extensions = [kernel("_types"), kernel("_ops"), kernel("_noise", NO_CONTRACTION),
              kernel("_engine")]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=DEBUG or ANNOTATE,
    ),
)
