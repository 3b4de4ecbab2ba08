"""Training hyper-parameters (torch-free, so the CLI can build its options without torch)."""

from __future__ import annotations

from dataclasses import dataclass

from edgevlm.errors import EdgeVLMError


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 15
    images_per_batch: int = 24  # x ~5 captions each; the image's cross K/V is computed once
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 300
    label_smoothing: float = 0.1
    min_word_freq: int = 5
    seed: int = 0
    threads: int = 2
    eval_images: int = 1000  # dev images scored each epoch (greedy)
    finetune_from_block: int = -1  # k >= 1: also train EfficientNet blocks k..15 and the head
    encoder_lr_scale: float = 0.1  # their learning rate, relative to lr
    scst_samples: int = 0  # K >= 2: self-critical training, K sampled captions per image, CIDEr-D reward
    scst_max_len: int = 16  # longest sampled caption, in words
    vqa_weight: float = 0.0  # > 0: multi-task, prefix-LM VQA on questions generated from the captions
    contrastive_weight: float = 0.0  # > 0: auxiliary image-text InfoNCE loss
    flip_augment: bool = False  # each step shows each photo mirrored with p 0.5 ("left"/"right" swapped)
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights

    def __post_init__(self):
        if self.epochs < 1 or self.images_per_batch < 1:
            raise EdgeVLMError("epochs and images_per_batch must be at least 1")
        if self.scst_samples == 1 or self.scst_samples < 0:
            raise EdgeVLMError("scst_samples must be 0 (cross-entropy) or at least 2")
        if self.scst_samples and (self.vqa_weight or self.contrastive_weight):
            raise EdgeVLMError("scst_samples trains captions only: leave vqa_weight and contrastive_weight at 0")
        if self.vqa_weight < 0 or self.contrastive_weight < 0:
            raise EdgeVLMError("vqa_weight and contrastive_weight must be >= 0 (0 turns the objective off)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise EdgeVLMError("ema_decay must be in [0, 1): 0 turns the average off, e.g. 0.995 averages ~200 steps")
        if self.finetune_from_block == 0 or self.finetune_from_block > 15:
            raise EdgeVLMError("finetune_from_block must be -1 (off) or a block index 1..15")
