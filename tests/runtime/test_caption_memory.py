"""Consensus re-ranking: the scorer against the CIDEr-D reward it follows, the memory file's
round trip, and an engine that says the candidate its memory agrees with."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.caption_memory import CaptionMemory, caption_words, consensus_scores, document_frequencies

WORDS = "a dog man runs on the grass red ball boy water two in".split()


def _random_captions(rng, images: int, per_image: int = 3) -> list[list[tuple[str, ...]]]:
    return [[tuple(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(per_image)] for _ in range(images)]


def test_consensus_with_one_image_is_that_images_cider_d_reward():
    from edgevlm.metrics.cider_reward import CiderD

    rng = np.random.default_rng(0)
    captions = _random_captions(rng, 12)
    reference = CiderD(captions)  # document frequencies from the same images
    df = document_frequencies(captions)
    candidates = [tuple(rng.choice(WORDS, size=rng.integers(2, 10))) for _ in range(6)] + [captions[3][1]]
    for image in range(len(captions)):
        ours = consensus_scores(candidates, [captions[image]], df, len(captions))
        theirs = [reference.score(image, c) for c in candidates]
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    # several neighbours: the mean of their scores
    both = consensus_scores(candidates, [captions[0], captions[5]], df, len(captions))
    np.testing.assert_allclose(both, [(reference.score(0, c) + reference.score(5, c)) / 2 for c in candidates], rtol=1e-9)


def test_a_candidate_equal_to_the_references_wins_and_unrelated_words_score_zero():
    captions = [[("a", "dog", "runs", "on", "the", "grass")] * 2, [("a", "man", "in", "red")] * 2]
    df = document_frequencies(captions)
    scores = consensus_scores([("a", "dog", "runs", "on", "the", "grass"), ("a", "dog", "in", "water"), ("boy", "ball")],
                              [captions[0]], df, 2)
    assert scores[0] > scores[1] > scores[2] == 0.0


def _memory(rng, images: int = 20, dims: int = 4) -> CaptionMemory:
    from edgevlm.export.caption_memory import whitened_projection

    captions = _random_captions(rng, images)
    embeddings = rng.normal(size=(images, 16)).astype(np.float32)
    mean, projection = whitened_projection(embeddings, dims)
    return CaptionMemory.remembering(embeddings, captions, mean, projection), embeddings


def test_the_memory_file_round_trips_and_scores_the_same(tmp_path):
    rng = np.random.default_rng(1)
    memory, embeddings = _memory(rng)
    path = tmp_path / "memory.npz"
    path.write_bytes(memory.to_bytes())
    loaded = CaptionMemory.load(str(path))
    assert loaded.captions == memory.captions
    assert all(count >= 2 for count in loaded.doc_freq.values())  # n-grams of one image are implied
    np.testing.assert_allclose(loaded.keys, memory.keys, atol=1e-3)  # stored as float16
    candidates = [tuple(rng.choice(WORDS, size=5)) for _ in range(5)]
    for image in range(3):
        np.testing.assert_allclose(consensus_scores(candidates, memory.captions[image : image + 2], loaded.doc_freq, 20),
                                   consensus_scores(candidates, memory.captions[image : image + 2], memory.doc_freq, 20))
        assert loaded.nearest(embeddings[image], 1)[0] == image  # a remembered photo is its own nearest


def test_the_cached_vectors_score_as_fresh_ones_across_cache_restarts(monkeypatch):
    """choose() reuses each image's caption vectors and the n-gram ids they name; when the
    cache starts again (a camera that wanders) the ids restart too, never mixing tables."""
    from edgevlm.runtime import caption_memory

    monkeypatch.setattr(caption_memory, "VECTORS_KEPT", 10)
    rng = np.random.default_rng(3)
    memory, embeddings = _memory(rng)
    candidates = [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(4)]
    reused = restarts = 0
    for image in (0, 7, 0, 13, 7, 2, 19, 0, 5, 11, 2):
        neighbours = memory.nearest(embeddings[image], 3)
        before = set(memory._vectors)
        cached = consensus_scores([caption_words(c) for c in candidates], [memory.captions[i] for i in neighbours],
                                  memory.doc_freq, 20, memory._vectors_of(neighbours), memory._gram_ids)
        reused += bool(before & {int(i) for i in neighbours} & set(memory._vectors))
        restarts += not before <= set(memory._vectors)
        fresh = consensus_scores([caption_words(c) for c in candidates], [memory.captions[i] for i in neighbours],
                                 memory.doc_freq, 20)
        np.testing.assert_array_equal(cached, fresh)
        assert len(memory._vectors) <= 10
    assert reused and restarts  # both paths ran: vectors from an earlier call, and a fresh start


def test_no_reference_captions_give_no_consensus():
    assert np.isnan(consensus_scores([("a", "dog")], [[], []], {}, 20)).all()
    with pytest.raises(ValueError, match="go together"):
        consensus_scores([("a", "dog")], [[("a", "dog")]], {}, 20, gram_ids={})


def test_whitened_projection_gives_unit_variance_and_keeps_at_most_the_rank():
    from edgevlm.export.caption_memory import whitened_projection

    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8)) * np.array([10, 5, 1, 1, 0.5, 0.1, 0.1, 0.1])
    mean, projection = whitened_projection(x, 3)
    np.testing.assert_allclose(((x - mean) @ projection).std(axis=0) * np.sqrt(200), 1.0, rtol=1e-4)
    # 5 photos span 4 axes (after centring): no empty fifth axis, scaled up into noise
    assert whitened_projection(x[:5], 64)[1].shape == (8, 4)


def test_a_small_memory_finds_a_photo_from_a_slightly_different_view_of_it():
    """With fewer photos than dims, a noisy copy of a remembered photo must still find it."""
    from edgevlm.export.caption_memory import whitened_projection

    rng = np.random.default_rng(4)
    for photos in (5, 20, 50, 128):
        embeddings = rng.normal(size=(photos, 256)).astype(np.float32)
        mean, projection = whitened_projection(embeddings, 128)
        memory = CaptionMemory.remembering(embeddings, [[("a",)]] * photos, mean, projection)
        for i in range(photos):
            noisy = embeddings[i] + rng.normal(scale=0.05, size=256).astype(np.float32)
            assert memory.nearest(noisy, 1)[0] == i, (photos, i)


def test_a_damaged_memory_file_is_one_line_naming_the_fix(tmp_path):
    rng = np.random.default_rng(5)
    memory, _ = _memory(rng)
    good = memory.to_bytes()
    path = tmp_path / "memory.npz"
    cases = {
        b"not a zip": "is not a valid caption memory",
        good[: len(good) // 2]: "is not a valid caption memory",  # cut short
        good[:-30] + bytes(30): "is not a valid caption memory",  # its end overwritten
    }
    for data, message in cases.items():
        path.write_bytes(data)
        with pytest.raises(EdgeVLMError, match=f"{message} .*; rebuild it with `edgevlm memory`"):
            CaptionMemory.load(str(path))
    arrays = dict(np.load(io.BytesIO(good)))
    for change, message in (
        (lambda a: a.pop("projection"), "no 'projection' array"),
        (lambda a: a.update(keys=a["keys"][:, :2]), "inconsistent shapes"),
        (lambda a: a.update(caption_start=a["caption_start"] + 1), "caption_start does not index"),
        (lambda a: a.update(ngram_df=a["ngram_df"][:-1]), "n-grams but"),
        (lambda a: a.update(captions=a["captions"].astype(np.int32)), "must be uint8 text"),
    ):
        broken = dict(arrays)
        change(broken)
        np.savez(str(path), **broken)
        with pytest.raises(EdgeVLMError, match=message):
            CaptionMemory.load(str(path))


def test_choose_follows_the_neighbours_captions_unless_the_model_is_weighted_in():
    rng = np.random.default_rng(3)
    memory, embeddings = _memory(rng)
    target = " ".join(memory.captions[7][0])
    candidates = ["boy ball water", target, "two man in red"]
    scores = [-0.1, -5.0, -0.2]  # the model prefers the others
    assert memory.choose(embeddings[7], candidates, scores, neighbours=1, logprob_weight=0.0) == 1
    assert memory.choose(embeddings[7], candidates, scores, neighbours=1, logprob_weight=100.0) == 0
    assert caption_words("A dog, running!") == ("a", "dog", "running")


class _EndingStepper:
    """The tiny random model never says eos; this makes eos its second choice from the third
    word on, so beams finish at varied lengths and the n-best lists hold several captions."""

    def __init__(self, stepper, eos: int):
        self.stepper, self.eos = stepper, eos

    def step(self, tokens, position):
        logits = np.array(self.stepper.step(tokens, position), np.float32)
        masked = logits.copy()
        masked[:, self.eos] = -np.inf
        logits[:, self.eos] = masked.max(axis=1) - 0.3 if position >= 2 else -np.inf
        return logits

    def reorder(self, rows):
        self.stepper.reorder(rows)

    def prefill(self, prompts):
        return self.stepper.prefill(prompts)


def _ending(engine):
    make = engine.backend.decoder_stepper
    engine.backend.decoder_stepper = lambda k, v: _EndingStepper(make(k, v), engine.manifest.special_tokens.eos)
    return engine


def _nbest(engine, pixels, beam):
    from edgevlm.runtime.search import nbest_search

    sight = engine.see(pixels)
    cross_k, cross_v = engine.cross_kv(sight.visual)
    cross_k, cross_v = np.repeat(cross_k, beam, axis=1), np.repeat(cross_v, beam, axis=1)
    tokens = engine.manifest.special_tokens
    return nbest_search(engine.backend.decoder_stepper(cross_k, cross_v), len(pixels), tokens.bos, tokens.eos,
                        engine.settings(beam))


def test_an_engine_with_a_memory_says_the_candidate_its_memory_agrees_with(tiny_engine_dir, tiny_dataset):
    """Memory caption of photo i = one of its lower-ranked beam candidates (which one varies
    with i, so no n-gram is in every photo's captions): with one neighbour (the photo itself)
    and no log-probability weight, the engine must say exactly that candidate."""
    from edgevlm.data.coco import load_coco_captions
    from edgevlm.export.caption_memory import build_caption_memory
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.preprocess import read_image_bgr

    captions_path = os.path.join(tiny_dataset, "captions_train.json")
    items = load_coco_captions(captions_path)
    beam = 4
    with _ending(CaptionEngine(tiny_engine_dir)) as engine:
        pixels = np.stack([engine.preprocess(read_image_bgr(item.path)) for item in items])
        before = engine.caption_pixels(pixels, beam_size=beam)
        lists = _nbest(engine, pixels, beam)
        last = [engine.tokenizer.decode(candidates[1 + i % (len(candidates) - 1)][1]) for i, candidates in enumerate(lists)]
    assert [engine.tokenizer.decode(c[0][1]) for c in lists] == before
    with open(captions_path) as f:
        data = json.load(f)
    data["annotations"] = [{"id": i + 1, "image_id": item.image_id, "caption": last[i]} for i, item in enumerate(items)]
    with open(captions_path, "w") as f:
        json.dump(data, f)

    manifest = build_caption_memory(tiny_engine_dir, captions_path, neighbours=1, beam_size=beam, logprob_weight=0.0)
    assert manifest.caption_memory.beam_size == beam and manifest.caption_memory.images == len(items)
    assert manifest.generation.beam_size != beam  # the plain default stays for --no-memory
    first_file = manifest.files["caption_memory"].path
    with _ending(CaptionEngine(tiny_engine_dir)) as engine:  # every file's sha256 verified on load
        after = engine.caption_pixels(pixels)  # the engine's default beam is now the memory's
        greedy = engine.caption_pixels(pixels, beam_size=1)
    with _ending(CaptionEngine(tiny_engine_dir, use_memory=False)) as engine:  # caption --no-memory
        assert engine.caption_pixels(pixels, beam_size=beam) == before
    chosen = [i for i in range(len(items)) if last[i] != before[i]]
    assert chosen, "every photo's beam gave one candidate; the test needs several"
    for i in range(len(items)):
        assert caption_words(after[i]) == caption_words(last[i])
    assert all(isinstance(g, str) for g in greedy)

    # built again (other settings): the manifest names the new file and the old one is gone
    manifest = build_caption_memory(tiny_engine_dir, captions_path, neighbours=2, beam_size=beam, dims=2)
    assert manifest.caption_memory.neighbours == 2 and manifest.caption_memory.dims == 2
    assert manifest.files["caption_memory"].path != first_file  # other dims: other bytes, other name
    assert not os.path.exists(os.path.join(tiny_engine_dir, first_file))
    assert not [name for name in os.listdir(tiny_engine_dir) if name.startswith(".tmp")]


def _nbest_of(engine, visual, beam):
    from edgevlm.runtime.search import nbest_search

    cross_k, cross_v = engine.cross_kv(visual)
    cross_k, cross_v = np.repeat(cross_k, beam, axis=1), np.repeat(cross_v, beam, axis=1)
    tokens = engine.manifest.special_tokens
    found = nbest_search(engine.backend.decoder_stepper(cross_k, cross_v), len(visual), tokens.bos, tokens.eos,
                         engine.settings(beam))
    return [[engine.tokenizer.decode(ids) for _, ids in candidates] for candidates in found]


def test_a_memory_caption_is_chosen_among_the_photo_and_its_mirror_images_captions(tiny_engine_dir, tiny_dataset):
    """With a memory, the beam searches the photo and its mirror image and the memory chooses
    among both views' captions. The tiny random encoder sees every photo alike, so the
    vision run on the mirrored pixels is answered with other visual tokens: photo i's memory
    caption is a candidate only that other view's beam finds, and the engine must say it;
    without the memory, or at beam 1, the mirror is never looked at."""
    import dataclasses

    from edgevlm.data.coco import load_coco_captions
    from edgevlm.export.caption_memory import build_caption_memory
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.preprocess import read_image_bgr

    captions_path = os.path.join(tiny_dataset, "captions_train.json")
    items = load_coco_captions(captions_path)
    beam, count = 4, len(items)
    with _ending(CaptionEngine(tiny_engine_dir)) as engine:
        pixels = np.stack([engine.preprocess(read_image_bgr(item.path)) for item in items])
        plain = engine.see(pixels)
        other = np.random.default_rng(0).normal(0, 3, plain.visual.shape).astype(np.float32)
        own, mirror = _nbest_of(engine, plain.visual, beam), _nbest_of(engine, other, beam)
    wanted = [next((text for text in mirror[i] if text not in own[i]), own[i][0]) for i in range(count)]
    assert [i for i in range(count) if wanted[i] not in own[i]], "both views found the same captions"
    with open(captions_path) as f:
        data = json.load(f)
    data["annotations"] = [{"id": i + 1, "image_id": item.image_id, "caption": wanted[i]} for i, item in enumerate(items)]
    with open(captions_path, "w") as f:
        json.dump(data, f)
    build_caption_memory(tiny_engine_dir, captions_path, neighbours=1, beam_size=beam, logprob_weight=0.0)

    def other_tokens_in_the_mirror(engine):
        """Rows of a vision run that are photo j's mirror image get other[j] as visual tokens."""
        see, runs = engine.see, []

        def spy(x):
            runs.append(x.shape[0])
            sight = see(x)
            visual = sight.visual.copy()
            for row in range(len(x)):
                for j in range(count):
                    if np.array_equal(x[row], pixels[j][..., ::-1]):
                        visual[row] = other[j]
            return dataclasses.replace(sight, visual=visual)

        engine.see = spy
        return runs

    with _ending(CaptionEngine(tiny_engine_dir)) as engine:
        assert engine.mirrors_captions() and not engine.mirrors_captions(1)
        runs = other_tokens_in_the_mirror(engine)
        after = engine.caption_pixels(pixels)
        assert runs == [count, count]  # the photos, then their mirror images, each once
        runs.clear()
        engine.caption_pixels(pixels, beam_size=1)
        assert runs == [count]  # greedy: one view
        # caption / serve: frames with nothing to see are told as such, the rest as above; two
        # photos and their mirror images are seen in one run
        runs.clear()
        black = np.zeros((64, 64, 3), np.uint8)
        told = engine.describe_images([read_image_bgr(items[0].path), black, read_image_bgr(items[1].path)])
        assert runs == [4]
        assert told[1].issue is not None and told[1].caption == ""
        assert [caption_words(told[0].caption), caption_words(told[2].caption)] == [caption_words(wanted[0]),
                                                                                  caption_words(wanted[1])]
    for i in range(count):
        assert caption_words(after[i]) == caption_words(wanted[i])
    with _ending(CaptionEngine(tiny_engine_dir, use_memory=False)) as engine:
        assert not engine.mirrors_captions(beam)
        runs = other_tokens_in_the_mirror(engine)
        engine.caption_pixels(pixels, beam_size=beam)
        assert runs == [count]


def test_memory_command_refuses_bad_input_in_one_line(tiny_engine_dir, tmp_path):
    from click.testing import CliRunner

    from edgevlm.cli.main import cli

    result = CliRunner().invoke(cli, ["memory", tiny_engine_dir, "--data", str(tmp_path / "missing.json")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: captions file not found: {tmp_path / 'missing.json'}"]
    result = CliRunner().invoke(cli, ["memory", tiny_engine_dir, "--data", "x.json", "--beam", "1"])
    assert result.exit_code == 2 and "--beam" in result.output


def test_memory_refuses_an_engine_with_cpu_variants(tiny_engine_dir, tiny_dataset):
    from edgevlm.export.caption_memory import build_caption_memory
    from tests.support import edit_manifest

    edit_manifest(tiny_engine_dir, lambda m: m.update(quantization={"variants": {"avx512-vnni": "vnni"}}))
    with pytest.raises(EdgeVLMError, match="lists engines for other CPUs .*run edgevlm memory on each variant's folder"):
        build_caption_memory(tiny_engine_dir, os.path.join(tiny_dataset, "captions_train.json"))


def test_a_memory_that_does_not_match_its_manifest_is_refused_when_read(tiny_engine_dir, tiny_dataset):
    from edgevlm.export.caption_memory import build_caption_memory
    from edgevlm.runtime.engine import CaptionEngine
    from tests.support import edit_manifest

    build_caption_memory(tiny_engine_dir, os.path.join(tiny_dataset, "captions_train.json"), beam_size=4)
    edit_manifest(tiny_engine_dir, lambda m: m["caption_memory"].update(images=99))
    with CaptionEngine(tiny_engine_dir) as engine:
        with pytest.raises(EdgeVLMError, match="holds 6 photos .* not the manifest's 99 photos"):
            engine.caption_memory


def test_a_manifest_naming_a_memory_file_it_does_not_list_is_refused(tiny_engine_dir):
    from edgevlm.runtime.manifest import load_manifest
    from tests.support import edit_manifest

    edit_manifest(tiny_engine_dir, lambda m: m.update(caption_memory={
        "file": "caption_memory", "images": 3, "captions": 6, "neighbours": 2, "beam_size": 4, "logprob_weight": 0.0,
        "dims": 2,
        "built_from": "x.json"}))
    with pytest.raises(EdgeVLMError, match="caption_memory.file names 'caption_memory', which is not in files"):
        load_manifest(tiny_engine_dir)
