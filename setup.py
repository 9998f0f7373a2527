"""Builds torch_trn3 and its C++ core (torch_trn3._C) against the installed torch.

Install with `pip install --no-build-isolation .` so the build uses the torch
already installed (pinned to 2.13.0) instead of resolving another one.
"""
import glob
import os

# Building must not autoload an already-installed torch_trn3 (whose _C may be
# the very file being rebuilt).
os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCES = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*.cpp"), recursive=True)
)

setup(
    ext_modules=[
        CppExtension(
            name="torch_trn3._C",
            sources=SOURCES,
            extra_compile_args=["-O2", "-Wno-unused-parameter"],
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
