"""Build the example compiled operator with fastcascade's setuptools conventions.

The extension cimports ``fastcascade.extension`` (found next to the installed fastcascade
package) and includes ``fastcascade_operator.h`` from ``fastcascade.get_include()``.
"""
import os
import sysconfig

import fastcascade
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTCASCADE_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}

# the directives fastcascade's own kernels use, set once here
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "infer_types": True,
    "embedsignature": True,
}
if sysconfig.get_platform().startswith("win"):
    compile_args = ["/O2"]
else:
    compile_args = ["-O1", "-g"] if DEBUG else ["-O3"]

extensions = [Extension("fc_example_ops._kernels", ["fc_example_ops/_kernels.pyx"],
                        include_dirs=[fastcascade.get_include()],
                        extra_compile_args=compile_args)]

# the folder that holds the fastcascade package, where Cython finds fastcascade/extension.pxd
package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastcascade.__file__)))

setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            include_path=[package_parent]))
