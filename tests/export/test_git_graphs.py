"""HF GIT on our three-graph contract (export/families/git_graphs.py): stepping the graphs
with a fixed-capacity cache reproduces GitForCausalLM's logits and ``generate`` ids, for
captions and for a VQA prompt, and the ONNX exports match the torch modules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from edgevlm.export.families.git_graphs import (  # noqa: E402
    GIT_GRAPH_MODULES,
    GitDecoderGraph,
    GitImageKVGraph,
    GitVisionGraph,
    git_graph_specs,
    tiny_git,
)

CAPACITY = 16
TOL = 1e-4


def _pixels(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _empty_cache(model, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(L,B,H,CAPACITY,hd) caches full of large garbage: every slot >= position must be masked."""
    cfg = model.config
    shape = (cfg.num_hidden_layers, batch, cfg.num_attention_heads, CAPACITY,
             cfg.hidden_size // cfg.num_attention_heads)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen) * 50, torch.randn(shape, generator=gen) * 50


@torch.no_grad()
def _greedy(model, pixels, prompt, max_new_tokens):
    """Our graphs, stepped like the runtime: image K/V once, a causal prefill of the prompt at
    position 0, then one token a step; finished rows continue on pad like HF's greedy search.
    Returns (ids (B, T0 + new), per-step text logits (B, T0 + new - 1, V))."""
    vision, image_kv, decoder = GitVisionGraph(model), GitImageKVGraph(model), GitDecoderGraph(model)
    cross_k, cross_v = image_kv(vision(pixels)[0])
    cache_k, cache_v = _empty_cache(model, pixels.shape[0], seed=7)
    eos, pad = model.generation_config.eos_token_id, model.generation_config.pad_token_id
    ids, feed, position, steps = prompt, prompt, 0, []
    finished = torch.zeros(prompt.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits, new_k, new_v = decoder(feed, torch.tensor(position), cache_k, cache_v, cross_k, cross_v)
        t = feed.shape[1]
        cache_k[:, :, :, position:position + t] = new_k  # the caller writes the new tokens' K/V
        cache_v[:, :, :, position:position + t] = new_v
        position += t
        steps.append(logits)
        token = logits[:, -1].argmax(-1).masked_fill(finished, pad)
        finished |= token == eos
        ids, feed = torch.cat([ids, token[:, None]], dim=1), token[:, None]
        if finished.all():
            break
    return ids, torch.cat(steps, dim=1)


def _hf_text_logits(model, pixels, ids):
    """HF's forward on the full sequence [image ; ids], no cache: the text positions' logits."""
    n = model.git.encoder.layer[0].attention.self.image_patch_tokens  # HF's own image-token count
    with torch.no_grad():
        return model(input_ids=ids, pixel_values=pixels, use_cache=False).logits[:, n:]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stepped_graphs_match_hf_forward_and_generate_for_captions(seed):
    model, pixels = tiny_git(seed), _pixels(seed)
    bos = model.generation_config.bos_token_id
    ids, logits = _greedy(model, pixels, torch.full((2, 1), bos), max_new_tokens=10)
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, max_new_tokens=10, do_sample=False, num_beams=1)
    assert torch.equal(ids, expected)
    hf = _hf_text_logits(model, pixels, ids)[:, :-1]  # the last token's prediction was never needed
    assert (logits - hf).abs().max() < TOL
    assert not torch.equal(ids[0], ids[1]), "tiny model should caption the two images differently"


def test_a_row_that_ends_early_continues_on_pad_like_generate():
    model, pixels = tiny_git(0), _pixels(0)
    start = torch.full((2, 1), model.generation_config.bos_token_id)
    first, _ = _greedy(model, pixels, start, max_new_tokens=10)
    model.generation_config.eos_token_id = int(first[0, 3])  # row 0 now ends by its third new token
    ids, logits = _greedy(model, pixels, start, max_new_tokens=10)
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, max_new_tokens=10, do_sample=False, num_beams=1)
    assert torch.equal(ids, expected)
    assert ids.shape[1] < first.shape[1] or (ids == model.generation_config.pad_token_id).any()
    assert (logits - _hf_text_logits(model, pixels, ids)[:, :-1]).abs().max() < TOL


def test_vqa_prompt_prefill_then_greedy_matches_generate():
    model, pixels = tiny_git(3), _pixels(3)
    cls = model.generation_config.bos_token_id
    prompt = torch.tensor([[cls, 17, 33, 45], [cls, 60, 8, 91]])  # [CLS] + question, no [SEP], as HF's VQA example
    ids, logits = _greedy(model, pixels, prompt, max_new_tokens=6)
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, input_ids=prompt, max_new_tokens=6, do_sample=False,
                                  num_beams=1)
    assert torch.equal(ids, expected)
    assert (logits - _hf_text_logits(model, pixels, ids)[:, :-1]).abs().max() < TOL


def test_image_kv_equals_hf_cache_of_the_image_positions():
    """The cross_kv graph's K/V are exactly HF's cached K/V for the N image tokens, whatever the text."""
    model, pixels = tiny_git(4), _pixels(4)
    with torch.no_grad():
        cross_k, cross_v = GitImageKVGraph(model)(GitVisionGraph(model)(pixels)[0])
        for text in ([[1]], [[1, 50, 51, 52]]):
            cache = model(input_ids=torch.tensor(text * 2), pixel_values=pixels, use_cache=True).cache
            n = cross_k.shape[-2]
            for i, layer in enumerate(cache.layers):
                assert (layer.keys[:, :, :n] - cross_k[i]).abs().max() < TOL
                assert (layer.values[:, :, :n] - cross_v[i]).abs().max() < TOL


def _export(module, specs, path):
    import onnx

    from edgevlm.export.graphs import dummy_inputs

    inputs, outputs = specs["inputs"], specs["outputs"]
    dynamic = {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation, tracer warnings on shape checks
        torch.onnx.export(module, dummy_inputs(inputs), path, dynamo=False, opset_version=17,
                          input_names=[s.name for s in inputs], output_names=[s.name for s in outputs],
                          dynamic_axes={k: v for k, v in dynamic.items() if v})
    onnx.checker.check_model(path, full_check=True)


def test_onnx_graphs_match_torch_modules(tmp_path):
    import onnxruntime as ort

    model = tiny_git(5)
    specs = git_graph_specs(model, CAPACITY)
    modules = {name: cls(model).eval() for name, cls in GIT_GRAPH_MODULES.items()}
    sessions = {}
    for name, module in modules.items():
        path = str(tmp_path / f"{name}.onnx")
        _export(module, specs[name], path)
        sessions[name] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(name, *inputs):
        """ORT and torch outputs for the same inputs (in the spec's order); asserts them within TOL."""
        feeds = {s.name: x.numpy() for s, x in zip(specs[name]["inputs"], inputs)}
        got = sessions[name].run([s.name for s in specs[name]["outputs"]], feeds)
        with torch.no_grad():
            want = modules[name](*inputs)
        for spec, g, w in zip(specs[name]["outputs"], got, want):
            assert g.shape == tuple(w.shape), spec.name
            assert np.abs(g - w.numpy()).max() < TOL, spec.name
        return want

    batch = 3  # exported with batch 2, tokens 1: the dynamic axes must hold
    visual, _ = run("vision", _pixels(5, batch))
    cross_k, cross_v = run("cross_kv", visual)
    cache_k, cache_v = (c / 50 for c in _empty_cache(model, batch, seed=8))
    for tokens in (1, 3):
        ids = torch.randint(3, 99, (batch, tokens), generator=torch.Generator().manual_seed(tokens))
        run("decoder", ids, torch.tensor(5), cache_k, cache_v, cross_k, cross_v)
