"""``edgevlm build ENGINE_DIR``: native TensorRT plans for this device, one per graph,
recorded in the engine's manifest (the work: runtime/tensorrt_build.py)."""

from __future__ import annotations

import click

from edgevlm.runtime.tensorrt_build import DEFAULT_WORKSPACE_MB, PRECISION_CHOICES


@click.command("build")
@click.argument("engine_dir", type=click.Path())
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default=None,
              help="Plan precision (default: int8 for a Q/DQ engine, else fp16 on TensorRT 10, the graph's on 11).")
@click.option("--workspace", "workspace_mb", type=click.IntRange(16), default=DEFAULT_WORKSPACE_MB, show_default=True,
              help="TensorRT builder workspace, MB.")
@click.option("--rebuild", is_flag=True, help="Rebuild every plan, even those still valid here.")
def command(engine_dir, precision, workspace_mb, rebuild):
    """Build TensorRT plans for ENGINE_DIR on this GPU (needs tensorrt and cuda-python); run
    with `--backend tensorrt`. A plan built for another GPU or TensorRT is never loaded."""
    from edgevlm.runtime.tensorrt_build import build_plans

    for graph, status in build_plans(engine_dir, precision, workspace_mb, rebuild).items():
        click.echo(f"{graph}: {status}")
