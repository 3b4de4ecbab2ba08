"""Threads and spinning per graph's CPU session (runtime/backends/graph_threads.py)."""

import dataclasses

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
