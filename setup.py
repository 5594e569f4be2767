"""The one thing pyproject.toml cannot declare yet without an experimental
setuptools table: the optional C extension.

``wasync._runtime._native`` (src/wasync/_runtime/_native.c) is the fiber
strategy's async host function callback in C. It is optional: without a C
compiler the build goes on without it, and wasync uses a Python callback
instead (slower suspensions, same behaviour).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wasync._runtime._native",
            sources=["src/wasync/_runtime/_native.c"],
            optional=True,
            py_limited_api=True,
        )
    ]
)
