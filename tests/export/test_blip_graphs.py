"""HF BLIP on the graph contract (export/families/blip_graphs.py): stepping the graphs on a
fixed-capacity cache reproduces BlipForConditionalGeneration's logits and generate() ids, and
BlipForQuestionAnswering's question states and answers; the ONNX exports match torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from edgevlm.export.families.blip_graphs import (  # noqa: E402
    BLIP_CAPTION_GRAPH_MODULES,
    BLIP_VQA_GRAPH_MODULES,
    BlipCrossKVGraph,
    BlipDecoderGraph,
    BlipQuestionGraph,
    BlipVisionGraph,
    blip_caption_graph_specs,
    blip_caption_start_ids,
    blip_stop_ids,
    blip_vqa_graph_specs,
    tiny_blip_caption,
    tiny_blip_vqa,
)

CAPACITY = 16
TOL = 1e-4
CLS = 1  # the tiny vocabulary's [CLS] (blip_graphs.TINY_TEXT); [SEP] is text_config.sep_token_id
QUESTIONS = ([5, 6, 7], [40, 41], [8, 9, 10, 11, 12, 13])  # word ids, wrapped in [CLS] .. [SEP]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread (no spin-waiting on a busy machine);
    restored afterwards for the other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pixels(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _question(model, words) -> torch.Tensor:
    """(1,Q) as BlipProcessor tokenizes a question: [CLS] words [SEP]."""
    return torch.tensor([[CLS, *words, model.config.text_config.sep_token_id]])


def _garbage_cache(model, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(L,B,H,CAPACITY,hd) caches of large garbage: every slot >= position must be masked."""
    text = model.config.text_config
    shape = (text.num_hidden_layers, batch, text.num_attention_heads, CAPACITY,
             text.hidden_size // text.num_attention_heads)
    gen = torch.Generator().manual_seed(7)
    return torch.randn(shape, generator=gen) * 50, torch.randn(shape, generator=gen) * 50


@torch.no_grad()
def _step(model, chunks, cross_k, cross_v):
    """Feed id chunks (B,T_i) at consecutive positions, writing new K/V into the cache like
    the runtime. Returns logits (B, sum T_i, V)."""
    decoder = BlipDecoderGraph(model)
    cache_k, cache_v = _garbage_cache(model, chunks[0].shape[0])
    position, out = 0, []
    for ids in chunks:
        logits, new_k, new_v = decoder(ids, torch.tensor(position), cache_k, cache_v, cross_k, cross_v)
        cache_k[:, :, :, position:position + ids.shape[1]] = new_k
        cache_v[:, :, :, position:position + ids.shape[1]] = new_v
        position += ids.shape[1]
        out.append(logits)
    return torch.cat(out, dim=1)


@torch.no_grad()
def _greedy(model, context, start, max_new_tokens):
    """Greedy search on our graphs as the runtime runs it: cross K/V once from ``context``
    (visual tokens or question states), the start ids prefilled at position 0, then one
    token a step; finished rows continue on pad, like HF's greedy search. -> (B, S + new)."""
    cross_k, cross_v = BlipCrossKVGraph(model)(context)
    decoder = BlipDecoderGraph(model)
    stop = blip_stop_ids(model.config.text_config)
    cache_k, cache_v = _garbage_cache(model, start.shape[0])
    ids, feed, position = start, start, 0
    finished = torch.zeros(start.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits, new_k, new_v = decoder(feed, torch.tensor(position), cache_k, cache_v, cross_k, cross_v)
        cache_k[:, :, :, position:position + feed.shape[1]] = new_k
        cache_v[:, :, :, position:position + feed.shape[1]] = new_v
        position += feed.shape[1]
        token = logits[:, -1].argmax(-1).masked_fill(finished, stop["pad"])
        finished |= token == stop["eos"]
        ids, feed = torch.cat([ids, token[:, None]], dim=1), token[:, None]
        if finished.all():
            break
    return ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caption_graphs_stepped_on_a_cache_match_hf_teacher_forced_logits(seed):
    model, pixels = tiny_blip_caption(seed), _pixels(seed)
    with torch.no_grad():
        hf_vision = model.vision_model(pixel_values=pixels)
        tokens, pooled = BlipVisionGraph(model)(pixels)
        torch.testing.assert_close(tokens, hf_vision.last_hidden_state, atol=1e-6, rtol=0)
        torch.testing.assert_close(pooled, hf_vision.pooler_output, atol=1e-6, rtol=0)
        ids = torch.randint(4, 97, (2, 7), generator=torch.Generator().manual_seed(seed))
        ids[:, 0] = model.config.text_config.bos_token_id
        expected = model(pixel_values=pixels, input_ids=ids).logits  # (2,7,V), no cache
        cross_k, cross_v = BlipCrossKVGraph(model)(tokens)
    # a 3-token prefill, single steps, and a 2-token chunk at a nonzero position
    ours = _step(model, [ids[:, :3], ids[:, 3:4], ids[:, 4:5], ids[:, 5:7]], cross_k, cross_v)
    torch.testing.assert_close(ours, expected, atol=TOL, rtol=0)
    assert (expected[0] - expected[1]).abs().max() > 0.1  # the two images give different logits


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_caption_greedy_ids_equal_hf_generate(seed):
    model, pixels = tiny_blip_caption(seed), _pixels(seed)
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, max_new_tokens=10, num_beams=1, do_sample=False)
        start = torch.tensor([blip_caption_start_ids(model.config.text_config)] * 2)
        ours = _greedy(model, BlipVisionGraph(model)(pixels)[0], start, max_new_tokens=10)
    assert ours.tolist() == expected.tolist()


def test_a_caption_prompt_starts_from_bos_and_its_words_without_the_final_sep():
    model, pixels = tiny_blip_caption(4), _pixels(4)
    prompt = [CLS, 20, 21, model.config.text_config.sep_token_id]  # the processor's "[CLS] a picture [SEP]"
    assert blip_caption_start_ids(model.config.text_config, prompt) == [97, 20, 21]
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, input_ids=torch.tensor([prompt] * 2), max_new_tokens=8,
                                  num_beams=1, do_sample=False)
        start = torch.tensor([blip_caption_start_ids(model.config.text_config, prompt)] * 2)
        ours = _greedy(model, BlipVisionGraph(model)(pixels)[0], start, max_new_tokens=8)
    assert ours.tolist() == expected.tolist()


def test_a_row_that_emits_sep_stops_and_is_padded_like_hf():
    model, pixels = tiny_blip_caption(0), _pixels(0)
    text = model.config.text_config
    with torch.no_grad():
        free = model.generate(pixel_values=pixels, max_new_tokens=10, num_beams=1, do_sample=False)
        # make row 0's second generated token the stop token: generate() reads sep_token_id per call
        text.sep_token_id = int(free[0, 2])
        expected = model.generate(pixel_values=pixels, max_new_tokens=10, num_beams=1, do_sample=False)
        ours = _greedy(model, BlipVisionGraph(model)(pixels)[0], free[:, :1], max_new_tokens=10)
    assert text.sep_token_id in expected[0].tolist()
    assert ours.tolist() == expected.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_question_states_and_answer_logits_match_hf(seed):
    model, pixels = tiny_blip_vqa(seed), _pixels(seed, batch=1)
    answer = torch.tensor([[model.config.text_config.bos_token_id, 30, 31, 32]])
    with torch.no_grad():
        image = model.vision_model(pixel_values=pixels).last_hidden_state
        for words in QUESTIONS:
            question = _question(model, words)
            expected = model.text_encoder(input_ids=question, attention_mask=torch.ones_like(question),
                                          encoder_hidden_states=image,
                                          encoder_attention_mask=torch.ones(image.shape[:2], dtype=torch.long))
            states = BlipQuestionGraph(model)(question, BlipVisionGraph(model)(pixels)[0])
            torch.testing.assert_close(states, expected.last_hidden_state, atol=TOL, rtol=0)
            # the answer decoder, teacher-forced, cross-attending to the question states
            expected_logits = model.text_decoder(input_ids=answer,
                                                 encoder_hidden_states=expected.last_hidden_state).logits
            cross_k, cross_v = BlipCrossKVGraph(model)(states)
            logits = _step(model, [answer[:, :1], answer[:, 1:]], cross_k, cross_v)
            torch.testing.assert_close(logits, expected_logits, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vqa_greedy_answers_equal_hf_generate(seed):
    model, answers = tiny_blip_vqa(seed), set()
    bos = torch.tensor([[model.config.text_config.bos_token_id]])  # generate() starts answers from bos
    for image_seed in (seed, seed + 10):
        pixels = _pixels(image_seed, batch=1)
        for words in QUESTIONS:
            question = _question(model, words)
            with torch.no_grad():
                expected = model.generate(pixel_values=pixels, input_ids=question, max_new_tokens=6, num_beams=1,
                                          do_sample=False)
                states = BlipQuestionGraph(model)(question, BlipVisionGraph(model)(pixels)[0])
                ours = _greedy(model, states, bos, max_new_tokens=6)
            assert ours.tolist() == expected.tolist(), words
            answers.add(tuple(expected[0].tolist()))
    assert len(answers) > 1  # the answers depend on the image and the question


def test_a_cache_longer_than_the_position_table_is_refused():
    model = tiny_blip_caption(0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        blip_caption_graph_specs(model, capacity=model.config.text_config.max_position_embeddings + 1)


# ---------------------------------------------------------------------------------- ONNX
NODE_NAMES = {"vision": "/vision_model/encoder/layers.1/self_attn/qkv/MatMul",
              "question": "/text_encoder/layer.1/crossattention/self/key/MatMul",
              "cross_kv": "/text_decoder/layer.1/crossattention/self/value/MatMul",
              "decoder": "/text_decoder/layer.1/crossattention/self/query/MatMul"}


FAMILIES = {"caption": (tiny_blip_caption, BLIP_CAPTION_GRAPH_MODULES, blip_caption_graph_specs),
            "vqa": (tiny_blip_vqa, BLIP_VQA_GRAPH_MODULES, blip_vqa_graph_specs)}


def _inputs(specs, sizes, model, position):
    """Tensors for a spec list at the given dynamic sizes: ids in the vocabulary, a scalar
    position, garbage caches (the graph must mask slots >= position)."""
    gen = torch.Generator().manual_seed(sum(sizes.values()) + position)
    out = []
    for spec in specs:
        shape = tuple(sizes.get(dim, dim) for dim in spec.shape)
        if spec.name == "position":
            out.append(torch.tensor(position))
        elif spec.dtype == "int64":
            out.append(torch.randint(0, model.config.text_config.vocab_size, shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen) * (50 if spec.name.startswith("cache") else 1))
    return tuple(out)


def _export(module, spec, path, model):
    dynamic = {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)}
               for s in spec["inputs"] + spec["outputs"]}
    example = _inputs(spec["inputs"], {"batch": 2, "tokens": 2, "question": 4, "context": 4}, model, position=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=17,
                          input_names=[s.name for s in spec["inputs"]],
                          output_names=[s.name for s in spec["outputs"]],
                          dynamic_axes={k: v for k, v in dynamic.items() if v})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_graphs_match_torch_at_other_sizes_than_exported(family, tmp_path):
    import onnx
    import onnxruntime as ort

    build, modules, graph_specs = FAMILIES[family]
    model = build(5)
    specs = graph_specs(model, CAPACITY)
    assert list(modules) == list(specs)
    for name, module_cls in modules.items():
        module, spec, path = module_cls(model).eval(), specs[name], tmp_path / f"{name}.onnx"
        with torch.no_grad():
            _export(module, spec, path, model)
        onnx.checker.check_model(str(path), full_check=True)
        # nodes carry HF's module paths: quantization excludes nodes by name
        assert NODE_NAMES[name] in {node.name for node in onnx.load(str(path)).graph.node}
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [s.name for s in spec["inputs"]]
        # the decoder at T=1 and T=3 at position 5; the other graphs at a new batch / length
        for sizes, position in (({"batch": 3, "tokens": 1, "question": 6, "context": 6}, 5),
                                ({"batch": 1, "tokens": 3, "question": 3, "context": 3}, 5)):
            inputs = _inputs(spec["inputs"], sizes, model, position)
            with torch.no_grad():
                expected = module(*inputs)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(None, {s.name: x.numpy() for s, x in zip(spec["inputs"], inputs)})
            for out_spec, want, have in zip(spec["outputs"], expected, got, strict=True):
                assert have.shape == tuple(sizes.get(d, d) for d in out_spec.shape), (name, out_spec.name)
                np.testing.assert_allclose(have, want.numpy(), atol=TOL, rtol=0, err_msg=f"{name}.{out_spec.name}")
