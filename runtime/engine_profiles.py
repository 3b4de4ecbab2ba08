"""TensorRT optimization profiles from the manifest: min/opt/max for every dynamic axis.

TensorRT compiles kernels for a range of shapes per input (an optimization profile); a run
outside it fails inside ``execute``. The ranges come from the manifest alone, so
onnxruntime's TensorRT provider (``trt_profile_*_shapes``) and the native builder
(``IOptimizationProfile.set_shape``) compile the same ranges. Torch-free, TensorRT-free.

Axis names are the exporter's (``export/graphs.py``; they reach the runtime only through the
manifest): ``batch`` (images in the encoder-side graphs, images x beams = rows in the
decoder), ``tokens`` (T new decoder tokens: 1 per step, the whole prompt at prefill),
``question`` / ``context`` (BLIP VQA's question length). An axis this module has no limit
for is refused by name: a guessed limit would be a plan that fails at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm.errors import EdgeVLMError

# Images per encoder run. The CLI, narration and the server send one frame at a time; 4 leaves
# room for a batching caller without making TensorRT tune kernels for batches never seen.
MAX_IMAGES = 4
MAX_BEAM = 16  # the CLI's --beam limit (caption_cmd.py)
DECODER_GRAPHS = ("decoder",)  # whose "batch" is rows (images x beams), not images


@dataclass(frozen=True)
class AxisRange:
    """Sizes one dynamic axis takes: TensorRT tunes for ``opt`` and accepts min..max."""

    min: int
    opt: int
    max: int


def beam_size(manifest) -> int:
    """The engine's default beam width (our generation section, or generate()'s num_beams)."""
    if manifest.hf_generation is not None:
        return max(1, manifest.hf_generation.num_beams)
    return manifest.generation.beam_size


def axis_ranges(manifest, graph: str) -> dict[str, AxisRange]:
    """{axis name: AxisRange} for every named axis of ``graph``'s inputs.

    batch: images 1..MAX_IMAGES (opt 1: one frame) in encoder-side graphs; rows
    1..MAX_IMAGES*MAX_BEAM (opt: one image's beams) in the decoder. tokens: 1..cache capacity
    (opt 1: a generation step; a prompt prefill is one run per question). question/context:
    1..the model's max_len positions (a question is cut to them, runtime/engine.py)."""
    m = manifest.model
    beams = beam_size(manifest)
    is_decoder = graph in DECODER_GRAPHS
    known = {
        "batch": AxisRange(1, beams, MAX_IMAGES * max(beams, MAX_BEAM)) if is_decoder else AxisRange(1, 1, MAX_IMAGES),
        "tokens": AxisRange(1, 1, m.cache_capacity),
        "question": AxisRange(1, min(16, m.max_len), m.max_len),
        "context": AxisRange(1, min(16, m.max_len), m.max_len),
    }
    ranges = {}
    for spec in manifest.graph(graph).inputs:
        for dim in spec.shape:
            if isinstance(dim, str) and dim not in ranges:
                if dim not in known:
                    raise EdgeVLMError(f"graphs.{graph}.inputs.{spec.name} has a dynamic axis {dim!r} that this edgevlm "
                                       f"has no TensorRT profile for (it knows {sorted(known)}); upgrade edgevlm")
                ranges[dim] = known[dim]
    return ranges


def input_profiles(manifest, graph: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """{input name: (min shape, opt shape, max shape)} for the inputs with a dynamic axis;
    static inputs (0-d position/prefix_len, fixed pixels) need no profile entry."""
    ranges = axis_ranges(manifest, graph)
    out = {}
    for spec in manifest.graph(graph).inputs:
        if any(isinstance(dim, str) for dim in spec.shape):
            out[spec.name] = tuple(tuple(getattr(ranges[d], which) if isinstance(d, str) else d for d in spec.shape)
                                   for which in ("min", "opt", "max"))
    return out


def max_shape(spec, ranges: dict[str, AxisRange]) -> tuple[int, ...]:
    """A tensor's largest shape under ``ranges``: what a device buffer bound once must hold.
    Outputs name only axes their graph's inputs name (export/graphs.py), so ``ranges`` covers them."""
    return tuple(ranges[d].max if isinstance(d, str) else d for d in spec.shape)


def ort_profile_options(manifest, graph: str) -> dict[str, str]:
    """onnxruntime TensorRT EP options ``trt_profile_{min,opt,max}_shapes``: "name:1x2x3,name2:4x5"
    (the format of onnxruntime's TensorRT-ExecutionProvider.md and its own transformers
    benchmark, which joins dims with "x" and inputs with ","). The EP wants every dynamic input
    listed once explicit profiles are given; a graph with none gets no profile options."""
    profiles = input_profiles(manifest, graph)
    if not profiles:
        return {}
    return {f"trt_profile_{which}_shapes": ",".join(f"{name}:" + "x".join(str(d) for d in shapes[i])
                                                    for name, shapes in profiles.items())
            for i, which in enumerate(("min", "opt", "max"))}


def check_within(graph: str, ranges: dict[str, AxisRange], axis_sizes: dict[str, int]) -> None:
    """Refuse a run whose dynamic axes leave the plan's profile, in one line naming the axis,
    before TensorRT fails on it with a message about bindings."""
    for axis, size in axis_sizes.items():
        r = ranges.get(axis)
        if r is not None and not r.min <= size <= r.max:
            raise EdgeVLMError(f"{graph}: axis {axis!r} is {size}, outside the {r.min}..{r.max} this TensorRT plan was "
                               "built for; use fewer images or a smaller --beam, or the onnxruntime backend")
