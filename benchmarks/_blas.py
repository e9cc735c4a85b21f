"""The BLAS a benchmark's dense baselines run on: recorded, unthrottled, and refused when generic.

Some machines set ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` for old OpenBLAS builds; with them a faiss flat
search can run OpenBLAS's generic x86-64 kernel (``Prescott``) at a third of its speed, and a "sparse vs dense"
ratio then measures the machine's BLAS setting, not the engines. A benchmark calls :func:`unthrottle` first: if
any such variable is set it re-executes itself (that process alone, never the tests or CI) without them, and
says which it removed. After the baselines have run, :func:`blas_libraries` lists every BLAS / OpenMP library
loaded with its kernel (``architecture``, from threadpoolctl) and :func:`generic_kernels` the ones on a generic
kernel; the benchmark refuses to write results while any is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: environment variables that pick or size OpenBLAS's kernel (unset for a benchmark)
THROTTLING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GOTOBLAS_CORETYPE", "GOTO_L2_SIZE")
#: set in the re-executed benchmark: which variables were removed (``NAME=VALUE;...``; empty: none were set)
REMOVED = "SPARSECLIP_BENCH_BLAS_REMOVED"
#: OpenBLAS kernels that are the generic fallbacks (lower case), not tuned for a current CPU
GENERIC = frozenset({"prescott", "generic", "katmai", "coppermine", "northwood", "banias", "core2", "atom",
                     "opteron", "athlon", "armv8", "riscv64_generic"})


def unthrottle(argv: list[str] | None = None) -> None:
    """Re-execute this process with the :data:`THROTTLING` variables unset when any is set (once; the removed
    ones are passed on in :data:`REMOVED`). Returns only when none is set."""
    if REMOVED in os.environ:
        return
    found = {k: os.environ[k] for k in THROTTLING if k in os.environ}
    env = {k: v for k, v in os.environ.items() if k not in found}
    env[REMOVED] = ";".join(f"{k}={v}" for k, v in found.items())
    if not found:
        os.environ[REMOVED] = ""
        return
    print(f"unsetting {', '.join(found)} for this benchmark (OpenBLAS picks its own kernel); re-running", flush=True)
    args = [sys.executable, *(sys.argv if argv is None else argv)]
    os.execve(sys.executable, args, env)


def removed() -> dict[str, str]:
    """The throttling variables :func:`unthrottle` removed from this process's environment."""
    raw = os.environ.get(REMOVED, "")
    return dict(item.split("=", 1) for item in raw.split(";") if "=" in item)


def blas_libraries() -> list[dict]:
    """Every BLAS and OpenMP library loaded in this process (threadpoolctl): ``library`` (file name),
    ``api``, ``implementation``, ``version``, ``kernel`` (OpenBLAS ``architecture``; None where not reported),
    ``threads``, ``threading``. Call it after the baselines have run (a library is listed once loaded)."""
    from threadpoolctl import threadpool_info

    return [{"library": Path(i.get("filepath") or "?").name, "package": _package(i.get("filepath")),
             "api": i.get("user_api"),
             "implementation": i.get("internal_api"), "version": i.get("version"),
             "kernel": i.get("architecture"), "threads": i.get("num_threads"),
             "threading": i.get("threading_layer")} for i in threadpool_info()]


def _package(filepath: str | None) -> str:
    """The wheel a library came with, from its folder (``faiss_cpu.libs`` -> ``faiss_cpu``), else its folder."""
    parent = Path(filepath or "?").parent.name
    return parent[:-len(".libs")] if parent.endswith(".libs") else parent


def generic_kernels(libraries: list[dict]) -> list[dict]:
    """The BLAS libraries of ``libraries`` that run a generic kernel (:data:`GENERIC`)."""
    return [lib for lib in libraries if lib["api"] == "blas" and str(lib["kernel"]).lower() in GENERIC]


def describe(libraries: list[dict], removed_vars: dict[str, str]) -> str:
    """One sentence for the doc: each BLAS with its kernel, and what was unset."""
    blas = [f"{lib['package']}: {lib.get('implementation') or '?'} {lib.get('version') or '?'} ("
            f"{lib['kernel'] or 'kernel not reported'} kernel, {lib.get('threads', '?')} threads)"
            for lib in libraries if lib["api"] == "blas"]
    unset = (f"; unset for this run: {', '.join(f'{k}={v}' for k, v in removed_vars.items())}" if removed_vars
             else "; no OPENBLAS_* kernel variable was set")
    return "BLAS loaded: " + ", ".join(blas or ["none"]) + unset
