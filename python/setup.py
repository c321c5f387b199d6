"""Builds relprop's Python package: relprop/_core.c over the public header,
linked with the static librelprop.a that CMake builds (so the installed
module needs nothing from the build tree at run time).

    pip install --no-build-isolation ./python     # from the repository's root
    python3 python/setup.py build_ext --inplace   # or in place, for a checkout

The library comes from $RELPROP_BUILD_DIR (default: build/ next to python/);
when it has no librelprop.a, CMake is run there first (`make build`'s
configuration). $RELPROP_EXTRA_CFLAGS / $RELPROP_EXTRA_LDFLAGS add flags
(tests/python uses them for an AddressSanitizer build).
"""
import os
import shlex
import subprocess

import numpy
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.abspath(os.environ.get("RELPROP_BUILD_DIR") or os.path.join(ROOT, "build"))
ARCHIVE = os.path.join(BUILD, "librelprop.a")


def ensure_library():
    if os.path.exists(ARCHIVE):
        return
    if not os.path.exists(os.path.join(ROOT, "CMakeLists.txt")):
        raise SystemExit(f"relprop: {ARCHIVE} is missing and {ROOT} is not a relprop checkout; "
                         "set RELPROP_BUILD_DIR to a CMake build of relprop")
    subprocess.check_call(["cmake", "-S", ROOT, "-B", BUILD])
    subprocess.check_call(["cmake", "--build", BUILD, "--target", "relprop_lib", "-j", str(os.cpu_count() or 2)])


def pkg_config_libs():
    # What librelprop.a needs: the build writes CMakeLists.txt's list.
    with open(os.path.join(BUILD, "relprop_pkg_deps.txt")) as f:
        deps = f.read().split()
    out = subprocess.check_output(["pkg-config", "--libs"] + deps, text=True)
    return shlex.split(out) + ["-lm", "-ldl", "-lpthread"]


ensure_library()
os.chdir(HERE)  # setuptools takes sources and packages relative to the working folder
extra_cflags = shlex.split(os.environ.get("RELPROP_EXTRA_CFLAGS", ""))
extra_ldflags = shlex.split(os.environ.get("RELPROP_EXTRA_LDFLAGS", ""))

setup(
    name="relprop",
    version="0.1.0",
    description="Explain ONNX Vision Transformers with LRP (Chefer et al., CVPR 2021): Python binding",
    packages=["relprop"],
    python_requires=">=3.10",
    install_requires=["numpy"],
    ext_modules=[
        Extension(
            "relprop._core",
            sources=["relprop/_core.c"],
            include_dirs=[os.path.join(ROOT, "include"), numpy.get_include()],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"] + extra_cflags,
            extra_objects=[ARCHIVE],
            extra_link_args=pkg_config_libs() + extra_ldflags,
            depends=[ARCHIVE, os.path.join(ROOT, "include", "relprop", "relprop.h")],
        )
    ],
)
