"""The runtime must never import torch: it is what runs on a Jetson without PyTorch. And
imports run one way: cli -> library -> runtime (the layering tests below)."""

import ast
import os
import pkgutil
import subprocess
import sys

import pytest

import edgevlm.calibration
import edgevlm.metrics
import edgevlm.runtime
from tests.support import BLOCK_TORCH, REPO_ROOT

# (a None entry is BLOCK_TORCH's marker, not a loaded module)
NO_TORCH_LOADED = ("assert not [m for m, module in sys.modules.items()\n"
                   "            if (m == 'torch' or m.startswith('torch.')) and module is not None]\n")


def _runtime_modules():
    """Every module under edgevlm.runtime, edgevlm.calibration and edgevlm.metrics, at any depth."""
    names = []
    for package in (edgevlm.runtime, edgevlm.calibration, edgevlm.metrics):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return names


def _run_python(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit 0 and print "ok"."""
    result = subprocess.run([sys.executable, "-c", "import sys\n" + code + "print('ok')\n"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_runtime_modules_import_without_torch():
    _run_python("import importlib\n"
                f"for name in {_runtime_modules() + ['edgevlm.cli.main']!r}:\n"
                "    importlib.import_module(name)\n" + NO_TORCH_LOADED)


def test_runtime_imports_where_torch_is_broken():
    # A torch that raises on import stands in for a machine without torch.
    _run_python(BLOCK_TORCH + "import importlib\n"
                f"for name in {_runtime_modules()!r}:\n"
                "    importlib.import_module(name)\n")


# --------------------------------------------------------------------------- torch-free quantize path
# What `edgevlm quantize` loads (the `calibrate` extra installs no torch) and the metrics its
# gate scores with, each alone in a fresh interpreter where importing torch raises.
QUANTIZE_PATH = ["edgevlm.calibration.quantize", "edgevlm.calibration.gate", "edgevlm.calibration.feeds",
                 "edgevlm.metrics"]


@pytest.mark.parametrize("name", QUANTIZE_PATH)
def test_quantize_path_imports_without_torch(name):
    _run_python(BLOCK_TORCH + f"import {name}\n" + NO_TORCH_LOADED)


def test_gate_metrics_score_without_torch():
    # The gate imports pycocoevalcap only when it scores: that path must be torch-free too.
    _run_python(BLOCK_TORCH + "from edgevlm.metrics.caption_metrics import score_captions\n"
                "scores = score_captions({0: ['a dog runs on grass', 'a brown dog running']}, {0: 'a dog runs'},\n"
                "                        only=('BLEU', 'CIDEr'))\n"
                "assert scores['BLEU-1'] > 0, scores\n" + NO_TORCH_LOADED)


# --------------------------------------------------------------------------- layering
# cli -> library (evaluation, training, data, export, calibration, metrics, models, ...) ->
# runtime (+ the torch-free leaves edgevlm.errors and edgevlm.fileio). Read from the source
# with ast, lazy imports inside functions included.
PACKAGE_DIRS = {"edgevlm": "edgevlm", "edgevlm.export": "export", "edgevlm.runtime": "runtime",
                "edgevlm.calibration": "calibration"}
# (file, imported module) pairs allowed until a file owned elsewhere is updated; keep it empty.
SCRIPT_HOSTS = ("edgevlm/scripts/", "edgevlm/cli/main.py")  # the only modules with a __main__ block


def _modules() -> dict[str, str]:
    """source file (relative to the repo) -> module name, for every module of every package."""
    out = {}
    for package, folder in PACKAGE_DIRS.items():
        for dirpath, dirnames, files in os.walk(os.path.join(REPO_ROOT, folder)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and d != "assets"]
            for file in files:
                if not file.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, file), REPO_ROOT)
                if folder == "edgevlm" and rel.split(os.sep)[1] in {"export", "runtime", "calibration"}:
                    continue
                parts = os.path.relpath(os.path.join(dirpath, file), os.path.join(REPO_ROOT, folder))[:-3].split(os.sep)
                name = ".".join([package] + [p for p in parts if p != "__init__"])
                out[rel.replace(os.sep, "/")] = name
    return out


def _imports(path: str, module: str) -> set[str]:
    """Every edgevlm module ``path`` imports, at any depth; ``from X import y`` counts as X
    and X.y (y may be a submodule)."""
    tree = ast.parse(open(os.path.join(REPO_ROOT, path), encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "edgevlm" or name.startswith("edgevlm.")}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(rule) -> list[str]:
    bad = []
    for path, module in sorted(_modules().items()):
        for imported in sorted(_imports(path, module)):
            if rule(path, module, imported):
                bad.append(f"{path} -> {imported}")
    return bad


def test_layering_scan_sees_lazy_and_relative_imports():
    assert "edgevlm.runtime.question_file" in _imports("edgevlm/evaluation/vqa_eval.py", "edgevlm.evaluation.vqa_eval")
    assert "edgevlm.calibration.feeds" in _imports("calibration/quantize.py", "edgevlm.calibration.quantize")
    assert _modules()["runtime/narration/policy.py"] == "edgevlm.runtime.narration.policy"


def test_only_the_cli_imports_the_cli():
    assert _violations(lambda path, module, imported: _under(imported, "edgevlm.cli")
                       and not _under(module, "edgevlm.cli")) == []


def test_nothing_imports_the_scripts():
    assert _violations(lambda path, module, imported: _under(imported, "edgevlm.scripts")
                       and not _under(module, "edgevlm.scripts")) == []


def test_runtime_imports_only_the_runtime_and_torch_free_leaves():
    # edgevlm.paths: where the shipped engine is (os and errors only): `edgevlm serve` opens it by default
    allowed = ("edgevlm.runtime", "edgevlm.errors", "edgevlm.fileio", "edgevlm.paths")
    assert _violations(lambda path, module, imported: _under(module, "edgevlm.runtime")
                       and not _under(imported, *allowed)) == []


def test_metrics_import_nothing_of_the_library():
    assert _violations(lambda path, module, imported: _under(module, "edgevlm.metrics")
                       and not _under(imported, "edgevlm.metrics", "edgevlm.errors")) == []


def test_evaluation_and_training_do_not_import_each_other():
    assert _violations(lambda path, module, imported: _under(module, "edgevlm.evaluation")
                       and _under(imported, "edgevlm.training")) == []
    assert _violations(lambda path, module, imported: _under(module, "edgevlm.training")
                       and _under(imported, "edgevlm.evaluation")) == []


def test_calibration_and_data_stay_off_the_torch_side():
    torch_side = ("edgevlm.training", "edgevlm.models", "edgevlm.evaluation")
    assert _violations(lambda path, module, imported: _under(module, "edgevlm.calibration", "edgevlm.data")
                       and _under(imported, *torch_side)) == []


def test_scripts_live_in_edgevlm_scripts():
    hosts = []
    for path in _modules():
        tree = ast.parse(open(os.path.join(REPO_ROOT, path), encoding="utf-8").read(), path)
        for node in tree.body:
            if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                    and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
                hosts.append(path)
    assert sorted(p for p in hosts if not p.startswith(SCRIPT_HOSTS)) == []
