"""A stepper checks its step graph's feeds against the manifest on its first step and again
whenever the token rows change shape or dtype; steps in between skip the per-input check
(runtime/backends/base.py: run_prechecked)."""

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.steppers import STEP_GRAPH, CacheStepper


def test_step_feeds_are_checked_once_per_row_shape(tiny_engine_dir):
    with CaptionEngine(tiny_engine_dir) as engine:
        m = engine.manifest.model
        cross = np.zeros((m.n_layers, 2, m.n_heads, m.num_visual_tokens, m.head_dim), np.float32)
        stepper = CacheStepper(engine.backend, KVCache(m.n_layers, 2, m.n_heads, m.cache_capacity, m.head_dim),
                               cross, cross, True, STEP_GRAPH)
        checks = []
        original = engine.backend.check_feeds
        engine.backend.check_feeds = lambda graph, feeds: (checks.append(graph), original(graph, feeds))
        first = stepper.step(np.array([4, 5]), 0)
        again = [stepper.step(np.array([6, 7]), position) for position in (1, 2, 3)]
        assert checks == [STEP_GRAPH] and first.shape == again[0].shape == (2, m.vocab_size)
        with pytest.raises(EdgeVLMError, match="input_ids: expected int64"):
            stepper.step(np.array([6, 7], np.int32), 4)  # another dtype: checked again, and refused
        assert checks == [STEP_GRAPH, STEP_GRAPH]
