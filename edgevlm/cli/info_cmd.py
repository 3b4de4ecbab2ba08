"""``edgevlm info``: version, shipped model and engine, onnxruntime providers."""

from __future__ import annotations

import json
from importlib import metadata

import click

from edgevlm import __version__
from edgevlm.paths import default_engine_dir, default_model_dir


def _installed_version(package: str) -> str | None:
    # Read from package metadata: importing torch just to print its version costs seconds.
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def command(as_json: bool):
    """Show the version, the shipped model and engine, and onnxruntime's providers."""
    import onnxruntime

    info = {
        "version": __version__,
        "default_model": default_model_dir(),
        "default_engine": default_engine_dir(),
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
        "torch": _installed_version("torch"),
    }
    if info["default_engine"]:
        from edgevlm.runtime.manifest import load_manifest

        manifest = load_manifest(info["default_engine"], verify=False)
        info["default_engine_tasks"] = list(manifest.tasks)  # "vqa": `edgevlm ask` works
        info["default_engine_precision"] = manifest.precision
        # Existence questions about these objects are answered by the concept head.
        info["default_engine_concepts"] = list(manifest.concepts.names) if manifest.concepts else []
        # Beam captions are re-ranked against this many remembered photos (0: no caption memory).
        info["default_engine_memory_photos"] = manifest.caption_memory.images if manifest.caption_memory else 0
        # Which INT8 layout this CPU gets: the top engine's target, or the variant listed for it.
        from edgevlm.runtime.cpu_isa import this_cpu_target
        from edgevlm.runtime.cpu_variants import variant_dir

        info["cpu_target"] = this_cpu_target()
        info["default_engine_targets"] = [t for t in [manifest.cpu_target, *manifest.cpu_variants] if t]
        info["engine_for_this_cpu"] = variant_dir(manifest, info["cpu_target"]) or info["default_engine"]
    if as_json:
        click.echo(json.dumps(info))
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")
