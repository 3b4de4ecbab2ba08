"""Self-critical sequence training (Rennie et al., 2017) with the mean-of-others baseline:
sample K captions per image, reward each by CIDEr-D against the image's human captions,
and push up the log-probability of samples that beat the other samples of their image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgevlm.models.captioner import Captioner
from edgevlm.metrics.cider_reward import CiderD


@torch.no_grad()
def sample_captions(model: Captioner, cross_k: torch.Tensor, cross_v: torch.Tensor, max_len: int, bos: int, eos: int,
                    pad: int, banned: tuple[int, ...]) -> torch.Tensor:
    """Multinomial samples on the KV cache -> ids (R, max_len + 1): bos, tokens, eos, pad."""
    decoder = model.decoder
    cfg = decoder.cfg
    rows = cross_k.shape[1]
    cache_k = torch.zeros(cfg.n_layers, rows, cfg.n_heads, max_len, cfg.head_dim)
    cache_v = torch.zeros_like(cache_k)
    ids = torch.full((rows, max_len + 1), pad, dtype=torch.long)
    ids[:, 0] = bos
    finished = torch.zeros(rows, dtype=torch.bool)
    for position in range(max_len):
        logits, new_k, new_v = decoder(ids[:, position : position + 1], cross_k, cross_v, cache_k, cache_v, position)
        cache_k[:, :, :, position] = new_k[:, :, :, 0]
        cache_v[:, :, :, position] = new_v[:, :, :, 0]
        logits = logits[:, 0]
        logits[:, list(banned)] = float("-inf")
        token = torch.multinomial(logits.softmax(-1), 1)[:, 0]
        token = torch.where(finished, torch.full_like(token, pad), token)
        ids[:, position + 1] = token
        finished |= token == eos
        if finished.all():
            break
    return ids


def scst_loss(model: Captioner, features: torch.Tensor, image_ids: list[int], cider: CiderD, samples: int,
              max_len: int, bos: int, eos: int, pad: int, unk: int) -> tuple[torch.Tensor, float]:
    """features (B,C,h,w) of images ``image_ids`` -> (loss, mean reward)."""
    cross_k, cross_v = model.decoder.cross_kv(model.projector(features))  # (L,B,H,N,hd)
    cross_k = cross_k.repeat_interleave(samples, dim=1)  # (L,B*K,H,N,hd)
    cross_v = cross_v.repeat_interleave(samples, dim=1)
    was_training = model.training
    model.eval()  # sample without dropout
    ids = sample_captions(model, cross_k.detach(), cross_v.detach(), max_len, bos, eos, pad, (pad, unk, bos))
    model.train(was_training)
    rewards = []
    for row, seq in enumerate(ids[:, 1:].tolist()):
        tokens = tuple(t for t in seq if t not in (eos, pad))
        rewards.append(cider.score(image_ids[row // samples], tokens))
    reward = torch.tensor(rewards).view(-1, samples)  # (B,K)
    baseline = (reward.sum(1, keepdim=True) - reward) / (samples - 1)  # mean of the other samples
    advantage = (reward - baseline).view(-1)  # (B*K,)
    logits, _, _ = model.decoder(ids[:, :-1], cross_k, cross_v)  # teacher-forced on the samples
    logp = -F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], ignore_index=pad, reduction="none")  # (R,T)
    mask = (ids[:, 1:] != pad).float()
    loss = -(advantage[:, None] * logp * mask).sum() / mask.sum()
    return loss, float(reward.mean())
