"""What a model family tells the runtime: its graphs' I/O table, preprocessing, tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.steppers import LAYERED_STEP_INPUTS, layer_input


@dataclass(frozen=True)
class GraphIO:
    """Names a graph must take and give; ``optional_*`` may be absent (older engines, no head)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    optional_inputs: tuple[str, ...] = ()
    optional_outputs: tuple[str, ...] = ()
    # stacked (L,...) inputs the graph may instead take one per layer, "name_0".."name_{L-1}"
    layered_inputs: tuple[str, ...] = ()

    def expected_inputs(self, have: tuple[str, ...], layers: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) input names for a graph whose inputs are ``have``: each layered
        input stacked where the graph takes it so, else per layer."""
        required = list(self.inputs)
        for name in self.layered_inputs:
            required += [name] if name in have else [layer_input(name, i) for i in range(layers)]
        return tuple(required), self.optional_inputs


# The optional single-token step graph (export/step_graph.py for ours, export/families/
# ved_step_graph.py for VisionEncoderDecoders): the decoder's I/O less prefix_len, tokens = 1.
# Its cache and cross K/V one input per layer (runtime/steppers.py), or stacked (older engines).
STEP_GRAPH_IO = GraphIO(inputs=("input_ids", "position"), outputs=("logits", "new_k", "new_v"),
                        layered_inputs=LAYERED_STEP_INPUTS)


@dataclass(frozen=True)
class RuntimeFamily:
    name: str
    graphs: dict[str, GraphIO]  # in the order they run per image
    tokenizer_kind: str  # what tokenizer.json holds, e.g. "wordlevel" (tokenizers' WordLevel)
    preprocess: Callable  # (image (H,W,3) uint8 BGR, manifest) -> (3,S,S) float32
    load_tokenizer: Callable  # (manifest) -> a tokenizer with encode/decode/question_prompt
    # cross-field checks beyond the I/O table: (manifest) -> problem text or None
    consistency: tuple[Callable, ...] = field(default=())
    files: tuple[str, ...] = ("tokenizer",)  # manifest.files keys besides the graphs' own
    # VQA families whose answer decoder reads something other than the image's cross K/V (BLIP:
    # the question encoded against the image): (engine, visual (1,N,D), question prompt ids) ->
    # (cross_k, cross_v, the decoder's own prompt ids). None: the image's K/V and the question prompt.
    answer_context: Callable | None = None
    # graphs an engine may add, used where present (older engines lack them): ours the
    # single-token ``decoder_step`` (export/step_graph.py)
    optional_graphs: dict[str, GraphIO] = field(default_factory=dict)


    def check(self, manifest) -> None:
        """Refuse an engine whose graphs do not match this family's table, naming the graph."""
        where = f"{manifest.root or 'the engine'}: {self.name}"
        if not set(self.graphs) <= set(manifest.graphs) <= set(self.graphs) | set(self.optional_graphs):
            optional = f" (optional: {sorted(self.optional_graphs)})" if self.optional_graphs else ""
            raise EdgeVLMError(f"{where} engines have graphs {sorted(self.graphs)}{optional}, this one has "
                               f"{sorted(manifest.graphs)}; re-export it")
        missing_files = [key for key in self.files if key not in manifest.files]
        if missing_files:
            raise EdgeVLMError(f"{where} engines list files {list(self.files)}, this one lacks {missing_files}; "
                               "re-export it")
        for name, io in {**self.graphs, **self.optional_graphs}.items():
            if name not in manifest.graphs:
                continue  # an optional graph this engine lacks
            spec = manifest.graph(name)
            inputs, optional_inputs = io.expected_inputs(spec.input_names, manifest.model.n_layers)
            for kind, required, optional, have in (("input", inputs, optional_inputs, spec.input_names),
                                                   ("output", io.outputs, io.optional_outputs, spec.output_names)):
                missing = [n for n in required if n not in have]
                unknown = [n for n in have if n not in required + optional]
                if missing or unknown:
                    raise EdgeVLMError(f"{where}: graph {name!r} lacks {kind}s {missing} or has unknown {kind}s "
                                       f"{unknown}; re-export the engine")
        for rule in self.consistency:
            problem = rule(manifest)
            if problem:
                raise EdgeVLMError(f"{where}: {problem}; re-export the engine")
