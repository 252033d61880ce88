"""The optional compiled decision path (``geogate._fastpath``, Cython).

Everything else about the package is in pyproject.toml. The extension is optional: without a
C compiler the install still succeeds (with a warning) and geogate uses its pure-Python
decision path.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [Extension("geogate._fastpath", ["src/geogate/_fastpath.pyx"])],
    compiler_directives={"language_level": "3"},
)
for extension in extensions:
    extension.optional = True  # set after cythonize, which builds new Extension objects

setup(ext_modules=extensions)
