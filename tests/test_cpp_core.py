"""Builds csrc/ with CMake (the C++ developers' path) and runs the C++ unit tests through ctest."""
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_cmake_build_and_ctest(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None or shutil.which("ctest") is None:
        pytest.skip("cmake/ctest not installed")
    pytest.importorskip("pybind11", reason="CMakeLists.txt finds pybind11 through the Python package")
    build = tmp_path / "build"
    # Build only the core and the C++ test (the Python module target writes into gpt/).
    for cmd in ([cmake, "-S", str(ROOT), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"],
                [cmake, "--build", str(build), "--target", "bpe_core_test", "-j2"]):
        step = subprocess.run(cmd, capture_output=True, text=True)
        assert step.returncode == 0, f"{' '.join(cmd)} failed:\n{step.stdout[-3000:]}\n{step.stderr[-3000:]}"
    result = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout
