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
    build = tmp_path / "build"
    # Build only the core and the C++ test (the Python module target writes into gpt/).
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"],
                   check=True, capture_output=True)
    subprocess.run([cmake, "--build", str(build), "--target", "bpe_core_test", "-j2"], check=True, capture_output=True)
    result = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout
