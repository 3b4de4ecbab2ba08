"""Threads and spinning per graph's CPU session (runtime/backends/graph_threads.py)."""

import dataclasses

import numpy as np

from edgevlm.runtime.backends.graph_threads import SessionThreading, cross_kv_macs, graph_threading, step_macs
from edgevlm.runtime.backends.onnxruntime_backend import cpu_session_options
from edgevlm.runtime.manifest import load_manifest


def test_small_graphs_run_on_one_thread_and_the_image_graph_spins_only_within_its_run(tiny_engine_dir):
    manifest = load_manifest(tiny_engine_dir)
    assert step_macs(manifest) < 64_000_000
    assert graph_threading(manifest, "decoder_step", 2, False) == SessionThreading(1, False)
    assert graph_threading(manifest, "cross_kv", 2, False) == SessionThreading(1, False)
    assert graph_threading(manifest, "vision", 2, False) == SessionThreading(2, True, spin_only_in_runs=True)
    assert graph_threading(manifest, "vision", 1, False) == SessionThreading(1, False)  # nobody to spin
    assert graph_threading(manifest, "decoder", 2, False) == SessionThreading(2, False)  # a question's prefill
    assert graph_threading(manifest, "vision", 2, True) == SessionThreading(2, True)  # --spinning: everywhere


def test_a_large_models_cross_kv_and_decoders_keep_every_thread_spinning_within_runs(tiny_engine_dir):
    manifest = load_manifest(tiny_engine_dir)
    vit_gpt2 = dataclasses.replace(manifest.model, n_layers=12, num_visual_tokens=197, d_model=768, n_heads=12,
                                   head_dim=64)
    big = manifest.replace(model=vit_gpt2)
    assert cross_kv_macs(big) == 2 * 12 * 197 * 768 * 768
    for graph in ("cross_kv", "decoder_step", "decoder"):
        assert graph_threading(big, graph, 2, False) == SessionThreading(2, True, spin_only_in_runs=True)
        assert graph_threading(big, graph, 1, False) == SessionThreading(1, False)
    assert graph_threading(big, "question", 2, False) == SessionThreading(2, False)  # BLIP VQA's: as the backend says


def test_spinning_within_runs_is_what_the_session_is_told():
    options = cpu_session_options(2, True, spin_only_in_runs=True)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert cpu_session_options(1, False).get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_only_a_step_with_many_rows_of_a_small_decoder_runs_wide(tiny_engine_dir):
    from edgevlm.runtime.backends.graph_threads import SINGLE_THREAD_MACS, wide_step_threading

    manifest = load_manifest(tiny_engine_dir)
    shipped = manifest.replace(model=dataclasses.replace(manifest.model, n_layers=4, d_model=256, vocab_size=2579))
    assert 8 * step_macs(shipped) < SINGLE_THREAD_MACS <= 16 * step_macs(shipped)  # beam 16: the caption memory's
    assert wide_step_threading(shipped, 8, 2, False) is None
    assert wide_step_threading(shipped, 16, 2, False) == SessionThreading(2, True, spin_only_in_runs=True)
    assert wide_step_threading(shipped, 16, 1, False) is None  # one thread: nothing to widen
    assert wide_step_threading(shipped, 16, 2, True) == SessionThreading(2, True)  # --spinning: between runs too
    big = manifest.replace(model=dataclasses.replace(manifest.model, n_layers=12, d_model=768, vocab_size=50257))
    assert wide_step_threading(big, 16, 2, False) is None  # its step session has every thread already


def test_wide_steps_run_on_a_second_session_with_every_thread_and_the_same_ids(tiny_engine_dir, monkeypatch):
    import edgevlm.runtime.backends.graph_threads as graph_threads
    from edgevlm.runtime.engine import CaptionEngine

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 80, 3), np.uint8) for _ in range(2)]
    with CaptionEngine(tiny_engine_dir, threads=2, use_memory=False) as narrow:
        expected = [narrow.caption_images([image], 3) for image in images]
        assert narrow.backend._wide_step is None
    monkeypatch.setattr(graph_threads, "SINGLE_THREAD_MACS", 3 * step_macs(load_manifest(tiny_engine_dir)))
    with CaptionEngine(tiny_engine_dir, threads=2, use_memory=False) as engine:
        assert [engine.caption_images([image], 3) for image in images] == expected
        wide = engine.backend._wide_step
        assert wide is not None and wide.get_session_options().intra_op_num_threads == 2
        assert engine.backend.sessions["decoder_step"].get_session_options().intra_op_num_threads == 1
        engine.caption_images([images[0]], 1)
        assert engine.backend._wide_rows == {3: True, 1: False}  # greedy stays on the one-thread session
