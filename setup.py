"""Build of driftloop's one optional C extension; everything else is in pyproject.toml.

driftloop._scan reads capture lines in SageMaker's exact layout in one pass (see
driftloop/_scan.c). It is optional: where no C compiler is at hand the install still
succeeds and the reader uses its numpy path, which gives the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "driftloop._scan",
            sources=["driftloop/_scan.c"],
            extra_compile_args=["-O2", "-fno-fast-math", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
