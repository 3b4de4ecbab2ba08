"""The floor under a caption: how fast this machine could run our graphs at best, and how far
from it we are.

Per graph, floor = max(compute, memory): compute = float ops / fp32 throughput + int8 ops /
int8 throughput (they run one after the other), memory = bytes / bandwidth at that graph's
working-set size. Throughput is the machine's best at the graph's regime (``decode`` for
the decoder step, ``image`` for the rest; best of 1 thread and the engine's threads, since
the hardware could run either). Per caption, floor = vision + cross_kv + steps x decoder
step, steps = tokens generated including eos. Per-run overhead is not in the floor: it is
part of what the ratio measures. All times in milliseconds.
"""

from __future__ import annotations

from edgevlm.graph_cost import GraphCost  # onnx: the calibrate extra

CAPTION_GRAPHS = ("vision", "cross_kv", "decoder")  # what runs per caption (per image; decoder per token)
MEASURED_KEYS = {"vision": "vision_ms", "cross_kv": "cross_kv_ms", "decoder": "decoder_step_ms"}


def regime(graph: str) -> str:
    """The throughput regime of a graph: the decoder steps one row per token."""
    return "decode" if graph == "decoder" else "image"


def best_gops(peak: dict, dtype: str, graph: str) -> float:
    """Best giga-ops/s of ``dtype`` ("int8"/"fp32") in ``graph``'s regime over the thread
    counts measured (``peak`` is MachinePeak.to_json())."""
    key = f"{dtype}_{regime(graph)}"
    return max(peak["gops"][key], peak["gops_1_thread"][key])


def graph_floor_ms(cost: GraphCost, int8_gops: float, fp32_gops: float, bandwidth_gbs: float) -> dict:
    """{"compute_ms", "memory_ms", "floor_ms"} of one run of a graph (ops and bytes from
    ``cost``; giga-ops/s and GB/s are the same 1e9 so ops / gops / 1e6 is ms)."""
    compute = cost.int8_ops / int8_gops / 1e6 + cost.float_ops / fp32_gops / 1e6
    memory = cost.bytes / bandwidth_gbs / 1e6
    return {"compute_ms": round(compute, 4), "memory_ms": round(memory, 4), "floor_ms": round(max(compute, memory), 4)}


def caption_floor(costs: dict[str, GraphCost], peak: dict, bandwidth_gbs: dict[str, float], measured: dict,
                  caption_ms: float, steps: float) -> dict:
    """The floor report: per caption graph its ops, bytes, floor and measured ms and their
    ratio; then per caption floor = vision + cross_kv + ``steps`` x decoder, against
    ``caption_ms`` measured (p50). ``bandwidth_gbs``: graph -> GB/s at its byte count;
    ``measured``: bench's ``runtime_graphs`` (vision_ms, cross_kv_ms, decoder_step_ms)."""
    graphs = {}
    for name in CAPTION_GRAPHS:
        cost = costs[name]
        row = {**cost.to_json(), "bandwidth_gbs": round(bandwidth_gbs[name], 2),
               **graph_floor_ms(cost, best_gops(peak, "int8", name), best_gops(peak, "fp32", name), bandwidth_gbs[name])}
        row["bound"] = "compute" if row["compute_ms"] >= row["memory_ms"] else "memory"
        row["measured_ms"] = measured[MEASURED_KEYS[name]]
        row["ratio"] = round(row["measured_ms"] / row["floor_ms"], 2) if row["floor_ms"] else None
        graphs[name] = row
    floor = graphs["vision"]["floor_ms"] + graphs["cross_kv"]["floor_ms"] + steps * graphs["decoder"]["floor_ms"]
    return {"graphs": graphs, "steps": steps, "caption_floor_ms": round(floor, 3), "caption_ms_p50": caption_ms,
            "caption_ratio": round(caption_ms / floor, 2) if floor else None}


def floor_report(engine, measured: dict, caption_ms: float, steps: float, threads: int) -> dict:
    """Count the engine's caption graphs (batch 1, decoder at one token), run the machine
    micro-benchmark, and put both against the measured timings (``caption_floor``), with the
    machine's figures under "machine". Needs onnx and sympy (the calibrate extra)."""
    from edgevlm.graph_cost import engine_costs
    from edgevlm.machine_peak import copy_bandwidth_gbs, measure_machine
    from edgevlm.runtime.steppers import step_graph as stepping_graph

    costs = engine_costs(engine.manifest)
    # An engine with the optional single-token graph steps on it, and bench's
    # decoder_step_ms times that: count the graph that actually runs.
    step_graph = stepping_graph(engine.manifest)
    costs["decoder"] = costs[step_graph]
    peak = measure_machine(threads).to_json()
    bandwidth = {name: copy_bandwidth_gbs(costs[name].bytes) for name in CAPTION_GRAPHS}
    return {"machine": peak, "decoder_graph": step_graph,
            **caption_floor(costs, peak, bandwidth, measured, caption_ms, steps)}
