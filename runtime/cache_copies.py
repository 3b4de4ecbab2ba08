"""Copy plans for a self-attention cache kept in device memory, as byte offsets (pure logic).

A device cache cannot be sliced like ``KVCache`` (runtime/kv_cache.py) writes it
(``cache[:, :, :, pos:pos+T] = new``): on the GPU each write is a strided memory copy. Both
moves the decoder needs are 2-D copies in ``cudaMemcpy2DAsync``'s terms (``height`` rows of
``width`` bytes, rows ``src_pitch`` / ``dst_pitch`` bytes apart): one call per write instead
of one copy per (layer, row, head). Here they are computed and, for tests, expanded into
plain ``(src_offset, dst_offset, size)`` copies that numpy can apply to byte buffers.

Layouts are C-contiguous: cache (L, R, H, S, hd), new K/V (L, R, H, T, hd), rows R = images
x beams, S = cache capacity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Copy2D:
    """``height`` rows of ``width`` bytes, from src + src_offset + i*src_pitch to
    dst + dst_offset + i*dst_pitch (``cudaMemcpy2DAsync`` arguments, offsets added to the bases)."""

    src_offset: int
    dst_offset: int
    src_pitch: int
    dst_pitch: int
    width: int
    height: int

    def copies(self) -> list[tuple[int, int, int]]:
        """The same move as 1-D copies: [(src_offset, dst_offset, size)] (tests, or a device
        without 2-D copies)."""
        return [(self.src_offset + i * self.src_pitch, self.dst_offset + i * self.dst_pitch, self.width)
                for i in range(self.height)]


def write_plan(layers: int, rows: int, heads: int, capacity: int, head_dim: int, position: int, tokens: int,
               itemsize: int) -> Copy2D:
    """new K or V (L,R,H,T,hd) -> cache slots position..position+T-1 of (L,R,H,S,hd).

    For each of the L*R*H (layer, row, head) blocks the T*hd new values are contiguous in
    both tensors: a 2-D copy of L*R*H rows of T*hd*itemsize bytes, source rows packed
    (pitch T*hd), destination rows one cache block apart (pitch S*hd), starting at slot
    ``position``."""
    if position < 0 or position + tokens > capacity:
        raise ValueError(f"cache full: position {position} + {tokens} tokens > capacity {capacity}")
    width = tokens * head_dim * itemsize
    return Copy2D(src_offset=0, dst_offset=position * head_dim * itemsize, src_pitch=width,
                  dst_pitch=capacity * head_dim * itemsize, width=width, height=layers * rows * heads)


def reorder_plan(order, layers: int, rows: int, row_bytes: int) -> list[Copy2D]:
    """Cache (L,R,...) -> spare (L,R,...) with new row i = old row ``order[i]`` (beam search's
    ``reorder``), ``row_bytes`` = H*S*hd*itemsize. One 2-D copy per new row: L blocks of
    ``row_bytes``, one layer (R*row_bytes) apart in both buffers. The spare then becomes the
    cache (ping-pong, as KVCache does): a gather cannot be done in place."""
    layer_pitch = rows * row_bytes
    return [Copy2D(src_offset=int(old) * row_bytes, dst_offset=new * row_bytes, src_pitch=layer_pitch,
                   dst_pitch=layer_pitch, width=row_bytes, height=layers) for new, old in enumerate(order)]
