"""The ``edgevlm`` command. Subcommands live one per module and import torch only when run,
so ``edgevlm info`` and the runtime commands work on a torch-free install.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from edgevlm import __version__
from edgevlm.errors import EdgeVLMError


EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + signal number, as shells report a killed command


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that the
    same ``finally`` blocks run: staging folders (``.tmp-*``) are removed, outputs stay
    complete or absent."""


def _stop_on_signal(signum: int, _frame) -> None:
    """First SIGINT/SIGTERM: raise, to unwind through the cleanups. A second one while they
    run: the default action (the user wants it gone now)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install_signal_handlers() -> None:
    """For the console command only: tests invoking ``cli`` in-process keep pytest's handlers."""
    signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)


def _forget_unhandled_interrupt() -> None:
    """Make ``sys.exit(130)`` the exit status however the interrupt was raised.

    CPython notes a KeyboardInterrupt that escapes code run from a string (``exec("...")``,
    which torch's and other libraries' generated code uses) as "unhandled", even when we
    catch it further up; ``python -m edgevlm.cli.main`` then kills itself with SIGINT after
    its cleanups instead of exiting 130 (1 export in ~7 under load). Running any string of
    code clears that note (pythonrun.c's run_eval_code_obj resets it first); nothing else
    public does."""
    try:
        exec("pass")
    except Exception:  # noqa: BLE001 - an audit hook refusing exec: the exit status is all that is at stake
        pass


class ErrorReportingGroup(click.Group):
    """Prints an EdgeVLMError (or a missing optional dependency) as one line, exit code 1;
    Ctrl-C and SIGTERM as one line, exit codes 130 and 143; the traceback only with --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): cleanups have run on the way here
            if ctx.obj and ctx.obj.get("debug"):
                import traceback

                traceback.print_exc()
            terminated = isinstance(exc, Terminated)
            _forget_unhandled_interrupt()
            click.echo(f"stopped: {'SIGTERM' if terminated else 'interrupted (Ctrl-C)'}; unfinished outputs were "
                       "removed", err=True)
            sys.exit(EXIT_SIGTERM if terminated else EXIT_SIGINT)
        except (EdgeVLMError, ModuleNotFoundError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = str(exc)
            if isinstance(exc, ModuleNotFoundError):
                message = f"missing package {exc.name!r}: this command needs the training extras (pip install -e '.[export]')"
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except BrokenPipeError:  # `edgevlm caption ... | head`: the reader left; not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # a bug, not bad input: say so in one line, keep the trace for --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback and report it)", err=True)
            sys.exit(2)


@click.group(cls=ErrorReportingGroup)
@click.version_option(__version__, prog_name="edgevlm")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.pass_context
def cli(ctx, debug: bool, verbose: bool):
    """edgevlm: captions and answers about what a camera sees, on small devices."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register():
    from edgevlm.cli import add_variant_cmd, ask_cmd, bench_cmd, build_cmd, caption_cmd, doctor_cmd, eval_cmd, export_cmd, info_cmd, memory_cmd, narrate_cmd, quantize_cmd, serve_cmd, train_cmd, train_concepts_cmd

    for module in (train_cmd, train_concepts_cmd, eval_cmd, caption_cmd, ask_cmd, narrate_cmd, quantize_cmd, info_cmd, bench_cmd, serve_cmd, doctor_cmd, build_cmd, memory_cmd,
                   add_variant_cmd):
        cli.add_command(module.command)
    cli.add_command(export_cmd.export_command)
    cli.add_command(export_cmd.validate_command)


_register()


def main():
    install_signal_handlers()
    cli(prog_name="edgevlm")


if __name__ == "__main__":
    main()
