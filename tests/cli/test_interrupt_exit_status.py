"""Ctrl-C exits 130 however deep the interrupt was raised: also inside code run from a string,
which CPython otherwise remembers as an unhandled KeyboardInterrupt and answers, under
``python -m``, by killing the process with SIGINT after our cleanups."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A command of the real group, interrupted while exec'd code runs (as torch's generated code is).
COMMAND = textwrap.dedent('''
    import click

    from edgevlm.cli.main import ErrorReportingGroup, install_signal_handlers

    @click.group(cls=ErrorReportingGroup)
    def cli():
        pass

    @cli.command()
    def work():
        exec("import os, signal\\nos.kill(os.getpid(), signal.{signal})\\nwhile True: pass\\n")

    install_signal_handlers()
    cli(["work"])
''')


@pytest.mark.parametrize("signal_name, code, said", [("SIGINT", 130, "stopped: interrupted (Ctrl-C)"),
                                                     ("SIGTERM", 143, "stopped: SIGTERM")])
def test_an_interrupt_inside_exec_code_still_exits_with_the_documented_status(tmp_path, signal_name, code, said):
    (tmp_path / "interrupted_command.py").write_text(COMMAND.format(signal=signal_name))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    finished = subprocess.run([sys.executable, "-m", "interrupted_command"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == code, finished.stderr
    assert finished.stderr.strip().splitlines() == [f"{said}; unfinished outputs were removed"]
