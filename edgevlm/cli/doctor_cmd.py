"""``edgevlm doctor``: what this device can do, check by check, and whether the chosen
engine runs here on the chosen provider.

One line per check: OK, MISSING (the engine cannot run without it), WARN (a feature is
lost, e.g. no audio device: speech goes to WAV files only), or n/a (not needed here), then
what was found and the fix. The exit code is 1 when something the engine + provider needs
is missing, with one ``error:`` line naming the first of them and its fix.
"""

from __future__ import annotations

import json

import click

from edgevlm.cli.options import backend_option, engine_option, provider_option
from edgevlm.errors import EdgeVLMError


def _line(check) -> str:
    fix = f" -> fix: {check.fix}" if check.ok is False and check.fix else ""
    return f"{check.label:<8} {check.name:<11} {check.detail}{fix}"


@click.command("doctor")
@engine_option
@provider_option
@backend_option
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"ok": ..., "checks": [...]}.')
def command(engine_dir, provider, backend, as_json):
    """Check what this device can do (onnxruntime providers, GPU and CUDA, OpenCV's video
    back-ends, cameras, espeak-ng and audio) and that the engine opens on --provider; with
    --backend tensorrt, that TensorRT is here and the engine's plans are current for it.
    Exits 1 when the engine cannot run here, naming what is missing and the fix."""
    from edgevlm.runtime.doctor import blocking, run_checks

    checks = run_checks(engine_dir, provider, backend)
    missing = blocking(checks)
    if as_json:
        click.echo(json.dumps({"ok": not missing, "provider": provider, "backend": backend,
                               "checks": [check.to_json() for check in checks]}))
    else:
        for check in checks:
            click.echo(_line(check))
    if missing:
        first = missing[0]
        # The first in fix order is named in full; the rest by name, so the line stays one line.
        more = f" (also missing: {', '.join(c.name for c in missing[1:])})" if len(missing) > 1 else ""
        # Through the CLI's error path: one `error: ...` line on stderr, exit code 1.
        how = "--backend tensorrt" if backend == "tensorrt" else f"--provider {provider}"
        raise EdgeVLMError(f"this engine cannot run here with {how}: {first.name}: "
                           f"{first.detail}{more}; {first.fix}")
