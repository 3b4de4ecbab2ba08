"""The word-embedding rows a VED step is fed (runtime/token_embeddings.py): read one row per
token, float32 or float16, and a file that is not (vocab, d) rows refused in one line."""

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.token_embeddings import HALF, TokenEmbeddings, write_token_embeddings


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rows_are_the_tables_rows_as_float32(tmp_path, dtype):
    table = np.random.default_rng(0).standard_normal((11, 6)).astype(np.float32)
    path = str(tmp_path / "rows.npy")
    write_token_embeddings(path, table, np.dtype(dtype).newbyteorder("<"))
    rows = TokenEmbeddings(path)
    got = rows.rows(np.array([[10], [0], [10]]))
    assert got.shape == (3, 1, 6) and got.dtype == np.float32
    np.testing.assert_array_equal(got[:, 0], table.astype(dtype)[[10, 0, 10]].astype(np.float32))
    rows.close()
    rows.close()  # twice is harmless


def test_a_file_that_is_not_rows_is_refused_in_one_line(tmp_path):
    not_numpy, cube = tmp_path / "x.npy", tmp_path / "cube.npy"
    not_numpy.write_bytes(b"not numpy at all")
    np.save(cube, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(EdgeVLMError, match=r"cannot read the token embeddings .*x\.npy: .*; re-export the engine"):
        TokenEmbeddings(str(not_numpy))
    with pytest.raises(EdgeVLMError, match=r"holds a \(2, 3, 4\) float32 array, not \(vocab, d\) float32 or float16 rows"):
        TokenEmbeddings(str(cube))


def test_a_truncated_file_is_named(tmp_path):
    path = tmp_path / "rows.npy"
    write_token_embeddings(str(path), np.ones((4, 8), np.float32), HALF)
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # the last row cut short
    rows = TokenEmbeddings(str(path))
    rows.rows(np.array([0]))
    with pytest.raises(EdgeVLMError, match="is truncated at token 3"):
        rows.rows(np.array([3]))
    rows.close()
