"""The runtime's cache logic, with a fake backend standing in for onnxruntime."""

import numpy as np

from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.search import SearchSettings, beam_search
from edgevlm.runtime.steppers import CacheStepper

BOS, EOS, VOCAB = 2, 3, 12


class FakeDecoderBackend:
    """new_k/new_v carry the fed token id; logits ask for token position+4 until position 3."""

    def __init__(self):
        self.calls = []

    def run(self, graph, feeds):
        assert graph == "decoder"
        ids, position = feeds["input_ids"], int(feeds["position"])
        self.calls.append({"position": position, "ids": ids[:, 0].copy(), "cache_k": feeds["cache_k"],
                           "seen": feeds["cache_k"][0, :, 0, :position, 0].copy()})
        rows = ids.shape[0]
        new = np.broadcast_to(ids.astype(np.float32)[None, :, None, :, None], (1, rows, 1, 1, 2)).copy()
        logits = np.zeros((rows, 1, VOCAB), np.float32)
        logits[:, 0, position + 4 if position < 3 else EOS] = 5.0
        return {"logits": logits, "new_k": new, "new_v": new}


def test_cache_is_written_in_place_and_fed_back():
    backend = FakeDecoderBackend()
    cache = KVCache(layers=1, rows=2, heads=1, capacity=8, head_dim=2)
    cross = np.zeros((1, 2, 1, 3, 2), np.float32)
    stepper = CacheStepper(backend, cache, cross, cross, takes_prefix_len=False)
    out = beam_search(stepper, 2, BOS, EOS, SearchSettings(beam_size=1, max_new_tokens=6, no_repeat_ngram=0))
    assert out == [[4, 5, 6], [4, 5, 6]]
    assert [c["position"] for c in backend.calls] == [0, 1, 2, 3]
    # every step sees exactly the tokens fed before it, in its own row
    assert backend.calls[3]["seen"].tolist() == [[BOS, 4, 5], [BOS, 4, 5]]
    # one buffer for the whole caption: never re-allocated or concatenated
    assert all(c["cache_k"] is cache.k for c in backend.calls)


def test_reorder_moves_rows_without_allocating():
    cache = KVCache(layers=2, rows=3, heads=1, capacity=4, head_dim=2)
    for row in range(3):
        cache.k[:, row] = row
        cache.v[:, row] = 10 + row
    buffers = {id(cache.k), id(cache.v), id(cache._spare_k), id(cache._spare_v)}
    cache.reorder(np.array([2, 2, 0]))
    assert cache.k[0, :, 0, 0, 0].tolist() == [2, 2, 0]
    assert cache.v[1, :, 0, 0, 0].tolist() == [12, 12, 10]
    cache.reorder(np.array([1, 0, 2]))
    assert cache.k[0, :, 0, 0, 0].tolist() == [2, 2, 0]
    assert {id(cache.k), id(cache.v), id(cache._spare_k), id(cache._spare_v)} == buffers


def test_write_past_capacity_is_refused():
    cache = KVCache(layers=1, rows=1, heads=1, capacity=2, head_dim=1)
    new = np.ones((1, 1, 1, 1, 1), np.float32)
    cache.write(1, new, new)
    try:
        cache.write(2, new, new)
    except ValueError as exc:
        assert "capacity 2" in str(exc)
    else:
        raise AssertionError("expected ValueError")
