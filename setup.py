"""Build of driftloop's one optional C extension; everything else is in pyproject.toml.

driftloop._scan reads capture lines in SageMaker's exact layout in one pass (see
driftloop/_scan.c). It is optional: where no C compiler is at hand the install still
succeeds and the reader uses its numpy path, which gives the same results. It is built
against CPython's stable ABI (3.11+), so the same `_scan.abi3.so` also serves the Lambda
runtime's newer Python (infra/lambda_bundle.py ships it when built on Linux x86-64).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "driftloop._scan",
            sources=["driftloop/_scan.c"],
            extra_compile_args=["-O2", "-fno-fast-math", "-Wall", "-Wextra"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            optional=True,
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
