"""The runtime must never import torch: it is what runs on a Jetson without PyTorch."""

import pkgutil
import subprocess
import sys

import edgevlm.calibration
import edgevlm.runtime
from tests.conftest import BLOCK_TORCH


def _runtime_modules():
    """Every module under edgevlm.runtime and edgevlm.calibration, at any depth."""
    names = []
    for package in (edgevlm.runtime, edgevlm.calibration):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return names


def test_runtime_modules_import_without_torch():
    code = (
        "import sys, importlib\n"
        f"for name in {_runtime_modules() + ['edgevlm.cli.main']!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_runtime_imports_where_torch_is_broken():
    # A torch that raises on import stands in for a machine without torch.
    code = BLOCK_TORCH + (
        "import importlib\n"
        f"for name in {_runtime_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
