"""numpy's OpenBLAS on one thread in every process that opens an engine.

The runtime's numpy work is small (a caption memory's 6,091 x 128 similarity, beam
bookkeeping: well under a millisecond), yet OpenBLAS starts a thread per core for it, and its
idle threads busy-wait after each call, on the cores onnxruntime, the camera and the speech
need. Measured on the 2-core AVX-512 VNNI EPYC (shipped INT8 engine, beam 3 with its caption
memory, 6 alternating processes, /work/runs/s25/ab_threads.py): CPU time per caption 95 ms
with OpenBLAS's default 2 threads against 41 ms with one, wall time the same (37.7 ms).

threadpoolctl (the scikit-learn project's library for exactly this) changes OpenBLAS's
thread count in a running process; an environment variable would have to be set before
numpy is first imported, which a library cannot promise. Only OpenBLAS is touched: MKL and
OpenMP pools (PyTorch's, in a process that also holds a model) keep their settings.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def single_thread_numpy_blas() -> bool:
    """Limit the loaded OpenBLAS libraries to one thread, once per process (~3 ms); -> whether
    threadpoolctl was there to do it (without it nothing changes but the cost above)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return False
    ThreadpoolController().select(internal_api="openblas").limit(limits=1)
    return True
