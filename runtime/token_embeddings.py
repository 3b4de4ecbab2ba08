"""The word-embedding rows a decoder step graph takes as its ``word_embeds`` input, read from
the engine's ``token_embeddings.npy`` one row per token.

Why outside the graph: a tied LM head (GPT-2's, BERT's) multiplies by the same table the
token lookup reads. In one graph, onnxruntime packs the head's copy at load and keeps the
table for the lookup as well: the race's ViT-GPT-2 INT8 step held 36 MB of it beside the
packed head. Without the lookup, the table is released once packed: that session's RSS went
from 227 to 190-194 MB (/work/runs/s27/maps_which.py, opt_mem.py; AVX-512 VNNI EPYC).

Why ``os.pread`` and not ``np.load(mmap_mode="r")``: a mapped file's pages stay resident once
touched, and on a recent kernel (6.18, large page-cache folios, 8 MB readahead) each new token
made ~1 MB of it resident. A read copies 768 floats into our array and leaves the file in the
page cache, which is not the process's memory.
"""

from __future__ import annotations

import os

import numpy as np

from edgevlm.errors import EdgeVLMError

TOKEN_EMBEDDINGS = "token_embeddings"  # the manifest's file key
TOKEN_EMBEDDINGS_FILE = "token_embeddings.npy"
STEP_EMBEDS_INPUT = "word_embeds"  # the step graph's (B,1,d) float32 input that replaces input_ids
FULL, HALF = np.dtype("<f4"), np.dtype("<f2")  # FP32 engines keep the model's rows; INT8 engines half of each
_DTYPES = (FULL, HALF)


def write_token_embeddings(path: str, table: np.ndarray, dtype: np.dtype = FULL) -> None:
    """Write the (V,d) table as a little-endian .npy file of ``dtype`` (float32 or float16)."""
    np.save(path, np.ascontiguousarray(table, dtype=dtype))


class TokenEmbeddings:
    """(V,d) rows of a .npy file; ``rows(ids)`` -> (R,1,d) float32. Keeps one open descriptor
    (``close``, or the garbage collector, releases it)."""

    def __init__(self, path: str):
        self._fd = None  # set last: a file refused below leaves nothing to close
        try:
            with open(path, "rb") as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as exc:
            raise EdgeVLMError(f"cannot read the token embeddings {path}: {exc}; re-export the engine") from exc
        if len(shape) != 2 or fortran_order or np.dtype(dtype) not in _DTYPES:
            raise EdgeVLMError(f"{path} holds a {shape} {dtype} array, not (vocab, d) float32 or float16 rows; re-export the engine")
        self.path, self.vocab_size, self.d = path, int(shape[0]), int(shape[1])
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.d * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """ids (R,) or (R,1) int -> their rows (R,1,d) float32."""
        if self._fd is None:
            raise EdgeVLMError(f"the token embeddings {self.path} were closed with their engine; open the engine again")
        flat = np.asarray(ids).reshape(-1)
        out = np.empty((flat.size, 1, self.d), np.float32)
        for r, token in enumerate(flat.tolist()):
            if not 0 <= token < self.vocab_size:
                raise EdgeVLMError(f"token id {token} is outside the vocabulary (0..{self.vocab_size - 1})")
            raw = os.pread(self._fd, self.row_bytes, self.offset + token * self.row_bytes)
            if len(raw) != self.row_bytes:
                raise EdgeVLMError(f"{self.path} is truncated at token {token}; re-export the engine")
            out[r, 0] = np.frombuffer(raw, self.dtype)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass
