"""Shared fixtures for the Python package's tests (run by `make test-python`).

The package is imported from PYTHONPATH (the Makefile points it at the
build's python/ folder); RELPROP_CLI names the `relprop` binary the maps are
compared with (default: build/relprop). A missing CLI fails the tests that
need it: they never skip."""
import os
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORACLE = os.path.join(ROOT, "tests", "oracle")
VARIANTS = os.path.join(ROOT, "tests", "variants")
DEMO_MODEL = os.path.join(ROOT, "models", "fmnist_vit.onnx")
SAMPLES = os.path.join(ROOT, "samples")


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("RELPROP_CLI") or os.path.join(ROOT, "build", "relprop")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the relprop CLI is not at {path} (build it, or set RELPROP_CLI)")
    return path


def run_cli(cli, *args):
    """Runs the CLI; returns its stdout, failing the test on a non-zero exit."""
    p = subprocess.run([cli, *args], capture_output=True, text=True)
    assert p.returncode == 0, f"relprop {' '.join(args)} exited {p.returncode}: {p.stderr}"
    return p.stdout


def rel_error(got, want):
    """max|got - want| / max|want|, as tests/test_oracle_maps.c computes it."""
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    assert got.shape == want.shape, f"{got.shape} values, expected {want.shape}"
    scale = np.abs(want).max()
    worst = np.abs(got - want).max()
    return worst / scale if scale > 0 else (0.0 if worst == 0 else np.inf)


def pearson(a, b):
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])
