"""Measure the two self-attention cache layouts for the exported decoder step, side by side.

    python -m edgevlm.scripts.cache_layout_bench MODEL_DIR [--steps 20] [--repeats 30]

- fixed_capacity (shipped): the graph reads the whole (L,B,H,S,hd) buffer and returns only
  the new rows; the runtime writes them in place at `position`.
- growing: the graph takes past K/V (L,B,H,t,hd), concatenates, and returns present K/V
  (L,B,H,t+1,hd); the runtime must feed back a new, larger array every step.

Prints ms per decoder step for each, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from edgevlm.model_io import load_model
from edgevlm.models.decoder import attend, merge_heads, split_heads
from edgevlm.runtime.backends.onnxruntime_backend import session_options


class GrowingDecoder(nn.Module):
    """The same weights, with a concatenating cache (what the shipped design avoids)."""

    def __init__(self, decoder):
        super().__init__()
        self.d = decoder

    def forward(self, input_ids, past_k, past_v, cross_k, cross_v):
        d = self.d
        position = past_k.shape[3]
        x = d.tok_emb(input_ids) + d.pos_emb(torch.arange(1) + position)
        present_k, present_v = [], []
        for i, layer in enumerate(d.layers):
            attn = layer.self_attn
            q, k, v = (split_heads(p, attn.n_heads) for p in attn.qkv(layer.ln_self(x)).chunk(3, dim=-1))
            k = torch.cat([past_k[i], k], dim=2)  # (B,H,t+1,hd)
            v = torch.cat([past_v[i], v], dim=2)
            x = x + attn.out(merge_heads(attend(q, k, v, None)))
            x = x + layer.cross_attn(layer.ln_cross(x), cross_k[i], cross_v[i])
            x = x + layer.mlp(layer.ln_mlp(x))
            present_k.append(k)
            present_v.append(v)
        return torch.nn.functional.linear(d.ln_f(x), d.tok_emb.weight), torch.stack(present_k), torch.stack(present_v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from edgevlm.export.onnx_export import export_engine
    from edgevlm.runtime.engine import CaptionEngine

    model, _ = load_model(args.model_dir)
    cfg = model.cfg.decoder
    n = model.cfg.num_visual_tokens
    with tempfile.TemporaryDirectory() as tmp:
        engine_dir = os.path.join(tmp, "engine")
        export_engine(args.model_dir, engine_dir)
        engine = CaptionEngine(engine_dir, threads=args.threads)
        growing_path = os.path.join(tmp, "growing.onnx")
        shape = (cfg.n_layers, 1, cfg.n_heads, 1, cfg.head_dim)
        cross = torch.randn(cfg.n_layers, 1, cfg.n_heads, n, cfg.head_dim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(GrowingDecoder(model.decoder).eval(),
                              (torch.zeros(1, 1, dtype=torch.int64), torch.zeros(shape), torch.zeros(shape), cross, cross),
                              growing_path, dynamo=False, opset_version=17,
                              input_names=["input_ids", "past_k", "past_v", "cross_k", "cross_v"],
                              output_names=["logits", "present_k", "present_v"],
                              dynamic_axes={"past_k": {3: "t"}, "past_v": {3: "t"}, "present_k": {3: "t1"}, "present_v": {3: "t1"}})
        growing = ort.InferenceSession(growing_path, session_options(args.threads), providers=["CPUExecutionProvider"])
        cross_np = cross.numpy()
        token = np.array([[5]], np.int64)

        def run_fixed():
            stepper = engine.backend.decoder_stepper(cross_np, cross_np)
            for position in range(args.steps):
                stepper.step(token[0], position)

        def run_growing():
            past_k = past_v = np.zeros((cfg.n_layers, 1, cfg.n_heads, 0, cfg.head_dim), np.float32)
            for _ in range(args.steps):
                _, past_k, past_v = growing.run(None, {"input_ids": token, "past_k": past_k, "past_v": past_v,
                                                       "cross_k": cross_np, "cross_v": cross_np})

        times = {"fixed_capacity": [], "growing": []}
        run_fixed(), run_growing()
        for _ in range(args.repeats):  # interleaved
            for name, fn in (("fixed_capacity", run_fixed), ("growing", run_growing)):
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) / args.steps * 1000)
    fixed, grow = np.median(times["fixed_capacity"]), np.median(times["growing"])
    print(f"decoder step, {args.steps} steps, {args.threads} threads: fixed_capacity {fixed:.3f} ms, "
          f"growing {grow:.3f} ms, growing/fixed {grow / fixed:.2f}x")


if __name__ == "__main__":
    main()
