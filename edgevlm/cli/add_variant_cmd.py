"""``edgevlm add-variant ENGINE_DIR VARIANT_DIR``: ship an INT8 engine made for another CPU
inside ENGINE_DIR; the runtime runs it on CPUs of its target (the work and its refusals:
export/cpu_variant.py)."""

from __future__ import annotations

import click


@click.command("add-variant")
@click.argument("engine_dir", type=click.Path())
@click.argument("variant_dir", type=click.Path())
def command(engine_dir, variant_dir):
    """Copy VARIANT_DIR (an INT8 engine of the same model, made with `quantize --variant cpu
    --target T` and gated on a T CPU or its emulation) into ENGINE_DIR/variants/T and list it, so that CPUs
    with T's int8 layout run it."""
    from edgevlm.export.cpu_variant import add_variant

    manifest, target, gate = add_variant(engine_dir, variant_dir)
    drop = gate.get("cider_drop_relative")
    where = gate.get("measured_on") + (f", emulated on {gate['emulated_on']}" if gate.get("emulated_on") else "")
    click.echo(f"added {variant_dir} to {engine_dir} as {manifest.cpu_variants[target]} (made for {target}; gate "
               f"passed on {where}: CIDEr drop {drop:+.2%} of at most "
               f"{gate.get('max_cider_drop'):.0%}); engines for {', '.join(sorted(manifest.cpu_variants))} now ship "
               f"beside the {manifest.cpu_target} one")
