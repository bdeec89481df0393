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
    # What pip resolves for `pip install -e ".[dev]"` on a fresh venv (README, command 2):
    # - torch: a plain requirement gets PyPI's CUDA build (5.9 GB, even on a CPU machine), which
    #   pins its own triton (torch 2.14.1 -> triton 3.8.0). On a CPU machine install
    #   the CPU build first, as .ci/run does (torch==2.13.0 from the CPU wheel); the CPU build pins
    #   no triton, so pip then takes the newest triton allowed here.
    # - triton: 3.6 is the GPU machine's (the oldest the kernels are verified on: the compile gate
    #   and the cuda tests); 3.8 and 3.9 are what pip installs beside torch 2.14.1 and beside the
    #   CPU build, and the kernel tests pass on both (3.9 in CI; 3.8 with the three spills its
    #   compiler adds, tests/compile_gate.py KNOWN_SPILLS). The gate's verdict depends on each
    #   version's code generation, so versions nobody has run it on are left out: < 3.10.
    # - tiktoken: the tokenizer's Unicode tables are tiktoken 0.14's (Unicode 16.0.0, from its Rust
    #   regex-syntax 0.8.11; csrc/gen_unicode_tables.py), and the tests check every code point
    #   against it. Another minor release may move to another Unicode version: 0.14 only.
    install_requires=[
        "torch>=2.4",
        "triton>=3.6,<3.10; platform_system == 'Linux'",
        "numpy",
        "tiktoken>=0.14,<0.15",
        "datasets",
        "tqdm",
        "sqlglot",
        "matplotlib",
    ],
    extras_require={
        # regex is not pinned: the tests use it only on the code points where its own Unicode
        # tables agree with tiktoken's (it follows the newest Unicode; tests/test_pretokenize.py).
        # transformers + safetensors: tests/test_export.py checks the Hugging Face export against them
        # pytest-timeout: the per-test limit in pyproject.toml (CI fails instead of hanging)
        "dev": ["pytest", "pytest-benchmark", "pytest-timeout>=2.1", "hypothesis", "regex", "pybind11>=2.10",
                "transformers>=4.40", "safetensors>=0.4"],
        "bench": ["tokenizers"],
    },
    zip_safe=False,
)
