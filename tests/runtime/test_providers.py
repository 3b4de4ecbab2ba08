"""The runtime on onnxruntime's GPU providers gives what it gives on the CPU, on the four
sample photos: the same greedy token ids from the FP32 tiny engine (its greedy choices are
not near-ties: the top two logits differ by > 4 along every path, see captioner_tiny), and the
same answers to "is there a dog?" with probabilities within 1e-3, from the tiny engine (its
decoder) and from the shipped model exported to FP32 (its concept head: P(yes) 0.02 to 0.50).
The real model's own captions are not compared token for token: on the CPU its top two logits
come within 0.01 of each other, too close for TF32 kernels. Skipped (tests/conftest.py) on a
machine without the provider."""

from __future__ import annotations

import numpy as np
import pytest

from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.preprocess import read_image_bgr
from tests.support import SAMPLE_PHOTOS

QUESTION = "is there a dog?"
EXECUTION_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                      "tensorrt": "TensorrtExecutionProvider"}
GPU_PROVIDERS = [
    pytest.param("cuda", marks=pytest.mark.gpu),
    pytest.param("tensorrt", marks=[pytest.mark.gpu, pytest.mark.tensorrt]),
]


def _run(engine_dir: str, provider: str) -> tuple[list[list[int]], list[tuple[str, float]]]:
    """-> (greedy token ids per photo, (answer, probability) to QUESTION per photo) on
    ``provider``. The concept head's answers are given as ("P(yes)", p): near even odds one
    provider may say "yes" where the other says "no", with the same probability of "yes"."""
    images = [read_image_bgr(path) for path in SAMPLE_PHOTOS]
    assert len(images) == 4
    with CaptionEngine(engine_dir, provider=provider) as engine:
        for graph, session in engine.backend.sessions.items():  # on that provider, not a silent fallback
            assert session.get_providers()[0] == EXECUTION_PROVIDER[provider], (graph, session.get_providers())
        pixels = np.stack([engine.preprocess(image) for image in images])
        ids = engine.generate(engine.see(pixels).visual, engine.settings(1))
        answers = [engine.answer_image(image, [QUESTION])[0] for image in images]
    return ids, [("P(yes)", a.probability if a.answer == "yes" else 1.0 - a.probability) if a.source == "concepts"
                 else (a.answer, a.probability) for a in answers]


def _assert_same_answers(gpu: list[tuple[str, float]], cpu: list[tuple[str, float]]) -> None:
    assert [text for text, _ in gpu] == [text for text, _ in cpu]
    assert [p for _, p in gpu] == pytest.approx([p for _, p in cpu], abs=1e-3)


@pytest.mark.parametrize("provider", GPU_PROVIDERS)
def test_gpu_provider_gives_the_cpu_tokens_and_answers_on_the_tiny_engine(tiny_engine_master, provider):
    cpu_ids, cpu_answers = _run(tiny_engine_master, "cpu")
    gpu_ids, gpu_answers = _run(tiny_engine_master, provider)
    assert gpu_ids == cpu_ids
    _assert_same_answers(gpu_answers, cpu_answers)


@pytest.mark.parametrize("provider", GPU_PROVIDERS)
def test_gpu_provider_gives_the_cpu_answers_on_the_shipped_model(shipped_fp32_engine, provider):
    _, cpu_answers = _run(shipped_fp32_engine, "cpu")
    _, gpu_answers = _run(shipped_fp32_engine, provider)
    assert [text for text, _ in cpu_answers] == ["P(yes)"] * 4  # the concept head answers it
    _assert_same_answers(gpu_answers, cpu_answers)
