"""Run the torch-free runtime on the oldest versions pyproject.toml accepts, as a Jetson
(Python 3.10, an onnxruntime wheel months behind PyPI) or a distribution's packages would:

    python -m edgevlm.scripts.oldest_deps_check [--python /path/to/python3.10] [--venv DIR]

Makes a virtual environment with ``--python``, installs each base dependency at the lowest
minor release its floor allows (``numpy>=1.24`` -> ``numpy>=1.24,<1.25``), then this checkout
without dependencies, and runs what a user runs first: ``caption`` on the shipped samples,
``ask``, ``narrate`` on the shipped clip (no speaker) and ``doctor``. Prints each command's
last line and exits non-zero on the first failure. Needs the package index (pip), so it is
a command to run before a release, not a test. First run (stop 35): OpenCV 4.8 has no
``cv2.utils.logging``, and every command failed on import (runtime/sources.py quiet_opencv).

Run it with Python >= 3.11 (it reads pyproject.toml with tomllib); ``--python`` may be older.
The floors have wheels up to Python 3.11 (numpy 1.24), so ``--python`` 3.12 or newer is refused.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import shutil
import tempfile

try:
    import tomllib
except ImportError:  # Python 3.10: the environment's Python may be, this script's may not
    sys.exit("oldest_deps_check reads pyproject.toml with tomllib: run it with Python >= 3.11 "
             "(pass --python python3.10 to make the environment with 3.10)")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(REPO, "edgevlm", "assets", "samples")


def floor_spec(requirement: str) -> str:
    """``name>=X.Y[.Z]`` -> ``name>=X.Y[.Z],<X.(Y+1)``: the oldest minor release allowed."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*(\d+)\.(\d+)((?:\.\d+)*)\s*", requirement)
    if match is None:
        raise ValueError(f"not a plain 'name>=X.Y' floor: {requirement!r}")
    name, major, minor, rest = match.groups()
    return f"{name}>={major}.{minor}{rest},<{major}.{int(minor) + 1}"


def base_floor_specs(pyproject: str = os.path.join(REPO, "pyproject.toml")) -> list[str]:
    """The oldest allowed release of each base (runtime) dependency."""
    with open(pyproject, "rb") as f:
        return [floor_spec(r) for r in tomllib.load(f)["project"]["dependencies"]]


COMMAND_TIMEOUT_S = 600  # pip's installs and the shipped clip's narration take well under this


def _run(args: list[str], cwd: str) -> str:
    """Run ``args``; -> its last output line, or exit with the command and its last 15 lines."""
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except OSError as exc:
        sys.exit(f"FAILED: cannot run {args[0]}: {exc.strerror}")
    except subprocess.TimeoutExpired:
        sys.exit(f"FAILED: {' '.join(args)} ran past {COMMAND_TIMEOUT_S} s")
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0:
        sys.exit(f"FAILED ({done.returncode}): {' '.join(args)}\n" + "\n".join(lines[-15:]))
    return lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for the environment")
    parser.add_argument("--venv", default=None, help="environment folder (default: a temporary one)")
    args = parser.parse_args()
    version = _run([args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], REPO)
    if tuple(int(v) for v in version.split(".")) >= (3, 12):
        sys.exit(f"{args.python} is Python {version}: the floors (numpy 1.24) have no wheels past 3.11; "
                 "pass --python python3.10 or python3.11")
    venv = args.venv or tempfile.mkdtemp(prefix="edgevlm-oldest-")
    bin_dir = os.path.join(venv, "bin")
    specs = base_floor_specs()
    print(f"environment: {venv} (kept if a step fails)", flush=True)
    _run([args.python, "-m", "venv", venv], REPO)
    python = os.path.join(bin_dir, "python")
    pip = [python, "-m", "pip", "install", "-q"]
    _run(pip + ["--only-binary", ":all:", *specs, "setuptools>=68", "wheel"], REPO)
    _run(pip + ["--no-deps", "--no-build-isolation", "-e", REPO], REPO)
    print(_run([python, "-c", "import sys, numpy, onnxruntime, cv2, tokenizers; print('python', sys.version.split()[0], "
                "'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__, 'opencv', cv2.__version__, "
                "'tokenizers', tokenizers.__version__)"], REPO))
    cli = [os.path.join(bin_dir, "edgevlm")]
    with tempfile.TemporaryDirectory() as out:
        for command in (["caption", SAMPLES],
                        ["ask", os.path.join(SAMPLES, "astronaut.jpg"), "is there a person?", "--json"],
                        ["narrate", os.path.join(SAMPLES, "street.mp4"), "--no-speak", "--audio-out",
                         os.path.join(out, "wav"), "--events", os.path.join(out, "events.jsonl")],
                        ["doctor"]):
            print(f"{command[0]}: {_run(cli + command, out)[:200]}")
    print(f"OK: the runtime ran on {', '.join(specs)}")
    if args.venv is None:
        shutil.rmtree(venv, ignore_errors=True)  # a temporary environment (~300 MB); --venv keeps one
    else:
        print(f"environment kept: {venv}")


if __name__ == "__main__":
    main()
