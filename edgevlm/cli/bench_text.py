"""``edgevlm bench``'s human-readable lines for the floor and the beam/ask timings."""

from __future__ import annotations


def floor_lines(floor: dict) -> list[str]:
    """The floor table: per caption graph its counted work, floor and measured ms and their
    ratio, then the per-caption floor against the measured p50 (bench_floor.py)."""
    if "skipped" in floor:
        return [f"floor: skipped ({floor['skipped']})"]
    m = floor["machine"]
    g, g1 = m["gops"], m["gops_1_thread"]
    lines = [f"floor: {m['isa']}, best of 1/{m['threads']} threads: int8 {max(g['int8_image'], g1['int8_image']):.0f} / "
             f"fp32 {max(g['fp32_image'], g1['fp32_image']):.0f} GOP/s at M=196, int8 {max(g['int8_decode'], g1['int8_decode']):.0f}"
             f" / fp32 {max(g['fp32_decode'], g1['fp32_decode']):.0f} GOP/s at M=1; DRAM copy {m['dram_gbs']:.1f} GB/s; "
             f"onnxruntime run {m['run_overhead_us']:.0f} us",
             f"  {'graph':<9} {'int8 GOP':>9} {'fp32 GOP':>9} {'MB':>6} {'GB/s':>6} {'bound':>8} {'floor ms':>9} "
             f"{'measured ms':>12} {'ratio':>7}"]
    for name, row in floor["graphs"].items():
        lines.append(f"  {name:<9} {row['int8_ops'] / 1e9:9.4f} {row['float_ops'] / 1e9:9.4f} {row['bytes'] / 1e6:6.2f} "
                     f"{row['bandwidth_gbs']:6.1f} {row['bound']:>8} {row['floor_ms']:9.3f} {row['measured_ms']:12.3f} "
                     f"{row['ratio']:6.1f}x")
    lines.append(f"  per caption: floor {floor['caption_floor_ms']:.2f} ms (vision + cross_kv + {floor['steps']} x "
                 f"{floor.get('decoder_graph', 'decoder')} step) vs measured p50 {floor['caption_ms_p50']:.2f} ms: {floor['caption_ratio']}x the floor")
    return lines


def mode_lines(result: dict) -> list[str]:
    """Beam-3 caption, default caption (where its beam is another) and ``ask`` timings, where measured."""
    lines = []
    beam3 = result.get("beam3")
    if beam3:
        lines.append(f"beam {beam3['beam']}    p50 {beam3['ms_p50']:8.2f} ms  p90 {beam3['ms_p90']:8.2f} ms   "
                     f"mean tokens {beam3['mean_tokens']}")
    default = result.get("default_caption")
    if default:
        how = ", re-ranked by the caption memory" if default["reranked"] else ""
        lines.append(f"default   p50 {default['ms_p50']:8.2f} ms  p90 {default['ms_p90']:8.2f} ms   "
                     f"beam {default['beam']}{how} (edgevlm caption)")
    for question, t in (result.get("ask") or {}).items():
        lines.append(f"ask       p50 {t['ms_p50']:8.2f} ms  p90 {t['ms_p90']:8.2f} ms   {question!r} ({t['route']})")
    return lines
