"""The search benchmark's BLAS (issue 27): generic kernels are found, a throttling OpenBLAS variable is removed by
re-executing the benchmark without it (and said), and the loaded libraries are listed with their kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _blas  # noqa: E402


def test_generic_kernels_are_found():
    libs = [{"api": "blas", "kernel": "Prescott", "library": "x", "package": "faiss_cpu"},
            {"api": "blas", "kernel": "Zen", "library": "y", "package": "numpy"},
            {"api": "openmp", "kernel": None, "library": "z", "package": "faiss_cpu"}]
    assert [g["library"] for g in _blas.generic_kernels(libs)] == ["x"]
    assert "OPENBLAS_CORETYPE=Prescott" in _blas.describe(libs, {"OPENBLAS_CORETYPE": "Prescott"})


def test_unthrottle_reexecutes_without_the_variables(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(f"import sys, os\nsys.path.insert(0, {str(ROOT / 'benchmarks')!r})\nimport _blas\n"
                      "_blas.unthrottle()\n"
                      "print(os.environ.get('OPENBLAS_CORETYPE'), sorted(_blas.removed().items()))\n")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_L2_SIZE": "262144"}
    env.pop(_blas.REMOVED, None)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == ("None [('OPENBLAS_CORETYPE', 'Prescott'), "
                                           "('OPENBLAS_L2_SIZE', '262144')]")
    assert "unsetting OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE" in out.stdout
    clean = {k: v for k, v in env.items() if k not in _blas.THROTTLING}
    out = subprocess.run([sys.executable, str(script)], env=clean, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "None []"


def test_blas_libraries_lists_numpys_blas():
    pytest.importorskip("threadpoolctl")
    import numpy as np

    np.ones((64, 64)) @ np.ones((64, 64))
    libs = _blas.blas_libraries()
    assert any(lib["api"] == "blas" for lib in libs)
    assert all({"library", "package", "kernel", "threads"} <= set(lib) for lib in libs)


def test_committed_batch_figures_ran_faiss_on_a_tuned_kernel():
    """Issue 27's acceptance: the re-measured search figures record faiss's BLAS, on a kernel that is not generic,
    and the doc's block names it."""
    import json

    for name in ("bench.json", "bench_batch.json", "bench_real.json"):
        bench = json.loads((ROOT / "docs" / "search" / name).read_text())
        faiss_blas = [lib for lib in bench["blas"] if lib["api"] == "blas" and lib["package"].startswith("faiss")]
        assert faiss_blas and not _blas.generic_kernels(bench["blas"]), name
        assert all(lib["kernel"] and lib["kernel"].lower() not in _blas.GENERIC for lib in faiss_blas)
        assert max(bench["load_before"], bench["load_after"]) <= 2
        assert f"{faiss_blas[0]['kernel']} kernel" in (ROOT / "docs" / "search.md").read_text()
