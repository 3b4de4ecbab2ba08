"""Prefix-LM attention for VQA: question tokens see each other, answer tokens are causal,
and the cached path (question prefilled, answer decoded) equals one full pass."""

import torch

from edgevlm.models.captioner import Captioner


def _model(cfg):
    torch.manual_seed(0)
    model = Captioner(cfg).eval()
    features = torch.randn(1, cfg.vision.channels, 2, 2)
    with torch.no_grad():
        cross_k, cross_v = model.decoder.cross_kv(model.projector(features))
    return model, cross_k, cross_v


@torch.no_grad()
def test_prefix_tokens_see_each_other_and_answer_tokens_are_causal(tiny_config):
    model, cross_k, cross_v = _model(tiny_config)
    ids = torch.tensor([[2, 5, 6, 7, 8, 9]])
    prefix = torch.tensor([3])  # bos + a two-word question
    base, _, _ = model.decoder(ids, cross_k, cross_v, prefix_len=prefix)
    later_prefix = ids.clone()
    later_prefix[0, 2] = 11  # the question's last word
    changed, _, _ = model.decoder(later_prefix, cross_k, cross_v, prefix_len=prefix)
    assert not torch.allclose(changed[0, 1], base[0, 1])  # an earlier question token sees it
    later_answer = ids.clone()
    later_answer[0, 5] = 12  # the last answer token
    changed, _, _ = model.decoder(later_answer, cross_k, cross_v, prefix_len=prefix)
    torch.testing.assert_close(changed[0, :5], base[0, :5], atol=0, rtol=0)  # nothing earlier sees it
    causal, _, _ = model.decoder(ids, cross_k, cross_v)  # without a prefix, nothing looks ahead
    causal_changed, _, _ = model.decoder(later_prefix, cross_k, cross_v)
    torch.testing.assert_close(causal_changed[0, :2], causal[0, :2], atol=0, rtol=0)


@torch.no_grad()
def test_prefill_then_cached_decode_equals_the_full_prefix_pass(tiny_config):
    model, cross_k, cross_v = _model(tiny_config)
    ids = torch.tensor([[2, 5, 6, 7, 8, 9]])
    prefix = torch.tensor([3])
    full, _, _ = model.decoder(ids, cross_k, cross_v, prefix_len=prefix)
    d = tiny_config.decoder
    cache_k = torch.zeros(d.n_layers, 1, d.n_heads, d.max_len, d.head_dim)
    cache_v = torch.zeros_like(cache_k)
    logits, new_k, new_v = model.decoder(ids[:, :3], cross_k, cross_v, cache_k, cache_v, 0, prefix_len=prefix)
    torch.testing.assert_close(logits, full[:, :3], atol=1e-5, rtol=1e-5)
    cache_k[:, :, :, :3], cache_v[:, :, :, :3] = new_k, new_v
    for position in range(3, ids.shape[1]):
        logits, new_k, new_v = model.decoder(ids[:, position : position + 1], cross_k, cross_v, cache_k, cache_v,
                                             position, prefix_len=prefix)
        cache_k[:, :, :, position], cache_v[:, :, :, position] = new_k[:, :, :, 0], new_v[:, :, :, 0]
        torch.testing.assert_close(logits[:, 0], full[:, position], atol=1e-5, rtol=1e-5)
