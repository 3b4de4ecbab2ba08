"""Decoding token by token with the fixed-capacity cache equals one full forward pass."""

import torch

from edgevlm.models.captioner import Captioner


def _setup(cfg, batch=2, length=9):
    torch.manual_seed(0)
    model = Captioner(cfg).eval()
    features = torch.randn(batch, cfg.vision.channels, 2, 2)
    ids = torch.randint(4, cfg.decoder.vocab_size, (batch, length))
    with torch.no_grad():
        cross_k, cross_v = model.decoder.cross_kv(model.projector(features))
    return model, ids, cross_k, cross_v


def _empty_cache(cfg, batch, capacity):
    d = cfg.decoder
    shape = (d.n_layers, batch, d.n_heads, capacity, d.head_dim)
    return torch.zeros(shape), torch.zeros(shape)


@torch.no_grad()
def test_token_by_token_equals_full_forward(tiny_config):
    cfg = tiny_config
    model, ids, cross_k, cross_v = _setup(cfg)
    full, full_k, full_v = model.decoder(ids, cross_k, cross_v)
    cache_k, cache_v = _empty_cache(cfg, ids.shape[0], cfg.decoder.max_len)
    for t in range(ids.shape[1]):
        logits, new_k, new_v = model.decoder(ids[:, t : t + 1], cross_k, cross_v, cache_k, cache_v, t)
        cache_k[:, :, :, t] = new_k[:, :, :, 0]
        cache_v[:, :, :, t] = new_v[:, :, :, 0]
        torch.testing.assert_close(logits[:, 0], full[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache_k[:, :, :, : ids.shape[1]], full_k, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_prefill_chunk_then_steps_equals_full_forward(tiny_config):
    cfg = tiny_config
    model, ids, cross_k, cross_v = _setup(cfg)
    full, _, _ = model.decoder(ids, cross_k, cross_v)
    cache_k, cache_v = _empty_cache(cfg, ids.shape[0], cfg.decoder.max_len)
    logits, new_k, new_v = model.decoder(ids[:, :4], cross_k, cross_v, cache_k, cache_v, 0)
    torch.testing.assert_close(logits, full[:, :4], atol=1e-5, rtol=1e-5)
    cache_k[:, :, :, :4], cache_v[:, :, :, :4] = new_k, new_v
    logits, _, _ = model.decoder(ids[:, 4:5], cross_k, cross_v, cache_k, cache_v, torch.tensor(4))
    torch.testing.assert_close(logits[:, 0], full[:, 4], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_stale_cache_slots_beyond_position_are_ignored(tiny_config):
    cfg = tiny_config
    model, ids, cross_k, cross_v = _setup(cfg)
    full, _, _ = model.decoder(ids[:, :1], cross_k, cross_v)
    cache_k, cache_v = _empty_cache(cfg, ids.shape[0], cfg.decoder.max_len)
    cache_k.normal_(), cache_v.normal_()  # garbage from an earlier, longer caption
    logits, _, _ = model.decoder(ids[:, :1], cross_k, cross_v, cache_k, cache_v, 0)
    torch.testing.assert_close(logits, full, atol=1e-5, rtol=1e-5)
