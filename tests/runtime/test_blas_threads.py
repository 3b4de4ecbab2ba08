"""Opening an engine puts numpy's OpenBLAS on one thread (runtime/blas_threads.py)."""

from threadpoolctl import ThreadpoolController


def test_an_open_engine_leaves_numpy_blas_on_one_thread(tiny_engine_dir):
    from edgevlm.runtime.engine import CaptionEngine

    with CaptionEngine(tiny_engine_dir):
        pools = ThreadpoolController().select(internal_api="openblas").info()
    assert pools and all(pool["num_threads"] == 1 for pool in pools)
