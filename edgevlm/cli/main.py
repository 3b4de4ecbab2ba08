"""The ``edgevlm`` command. Subcommands live one per module and import torch only when run,
so ``edgevlm info`` and the runtime commands work on a torch-free install.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from edgevlm import __version__
from edgevlm.errors import EdgeVLMError


class ErrorReportingGroup(click.Group):
    """Prints an EdgeVLMError (or a missing optional dependency) as one line, exit code 1;
    the traceback only with --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (EdgeVLMError, ModuleNotFoundError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = str(exc)
            if isinstance(exc, ModuleNotFoundError):
                message = f"missing package {exc.name!r}: this command needs the training extras (pip install -e '.[export]')"
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit, KeyboardInterrupt):
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
    from edgevlm.cli import ask_cmd, bench_cmd, caption_cmd, eval_cmd, export_cmd, info_cmd, narrate_cmd, quantize_cmd, train_cmd, train_concepts_cmd

    for module in (train_cmd, train_concepts_cmd, eval_cmd, caption_cmd, ask_cmd, narrate_cmd, quantize_cmd, info_cmd, bench_cmd):
        cli.add_command(module.command)
    cli.add_command(export_cmd.export_command)
    cli.add_command(export_cmd.validate_command)


_register()


def main():
    cli(prog_name="edgevlm")


if __name__ == "__main__":
    main()
