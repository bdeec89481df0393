"""Builds the C++ BPE tokenizer extension (gpt._bpe) and installs the Python packages.

    pip install -e ".[dev]"                              # development install (needs PyPI)
    pip install --no-build-isolation --no-deps -e .      # offline machines that already have the deps
"""
import glob
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

extra_compile_args = ["-O3"] if sys.platform != "win32" else ["/O2"]
extra_link_args = ["-pthread"] if sys.platform.startswith("linux") else []
if sys.platform.startswith("linux"):
    extra_compile_args.append("-pthread")

ext_modules = [
    Pybind11Extension(
        "gpt._bpe",
        sorted(glob.glob("csrc/*.cpp")),
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
    )
]

setup(
    name="text2sql-gpt",
    version="0.1.0",
    description="A performance-first GPT trainer from scratch (Triton kernels, C++ BPE) for text-to-SQL",
    python_requires=">=3.11",
    packages=find_packages(include=["kernels*", "gpt*", "data*", "train*", "text2sql*", "bench*"]),
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    install_requires=[
        "torch>=2.4",
        "triton>=3.0; platform_system == 'Linux'",
        "numpy",
        "tiktoken",
        "datasets",
        "tqdm",
        "sqlglot",
        "matplotlib",
    ],
    extras_require={
        "dev": ["pytest", "pytest-benchmark", "hypothesis", "tiktoken", "regex", "pybind11>=2.10"],
        "bench": ["tokenizers"],
    },
    zip_safe=False,
)
