"""Tied LM heads stored once: the word embedding read from the (d,V) transpose that the head
multiplies by. Exported as written (a Gather on the (V,d) table, a MatMul on its folded
transpose), a tied head is stored twice: +154 MB for GPT-2 small, +94 MB for BLIP-base."""

from __future__ import annotations

import torch


def embed_from_table(table: torch.Tensor, input_ids: torch.Tensor, d: int) -> torch.Tensor:
    """(B,T) ids -> (B,T,d) columns of a (d,V) ``table``: the word embedding read from the
    transposed table a tied LM head multiplies by, so the exporter stores one (d,V) copy."""
    b, t = input_ids.shape
    return torch.index_select(table, 1, input_ids.reshape(-1)).t().reshape(b, t, d)
