"""Caption training on cached encoder features: train split, dev validation each epoch,
an atomic checkpoint each epoch, ``resume`` from it, the best epoch kept as a model folder
(dev CIDEr; with VQA, dev CIDEr + dev VQA accuracy) and every epoch as ``epoch-N``.

Multi-task (``vqa_weight`` > 0): each batch's images bring their captions (next-token loss)
and their generated questions (prefix-LM loss on the answer only), sharing one cross K/V
per image; ``contrastive_weight`` > 0 adds image-text InfoNCE.

``flip_augment``: each step shows each photo mirrored with probability 0.5 (features of the
mirrored photos are cached too), with "left" and "right" swapped in its captions and
answers. ``ema_decay`` > 0: an exponential moving average of the weights is what is
validated and saved (the raw weights keep training).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgevlm.config import ModelConfig
from edgevlm.data.coco import CaptionedImage, load_coco_captions, resolve_split
from edgevlm.errors import EdgeVLMError
from edgevlm.metrics.caption_metrics import score_captions
from edgevlm.metrics.vqa_metrics import score_answers
from edgevlm.fileio import atomic_path, write_json
from edgevlm.generate import answer_from_visual, generate_from_features, search_settings
from edgevlm.model_io import load_model, resize_vocab, save_model
from edgevlm.models.captioner import Captioner
from edgevlm.runtime.text import CaptionTokenizer
from edgevlm.tokenizer_training import add_words, train_tokenizer
from edgevlm.metrics.cider_reward import CiderD
from edgevlm.training.contrastive import ContrastiveHead
from edgevlm.features import cached_features
from edgevlm.training.scst import scst_loss
from edgevlm.training.settings import TrainSettings
from edgevlm.training.vqa_data import answer_words, encode_questions, frequent_question_words, questions_for

MIRRORED_WORDS = (("left", "right"),)  # swapped in the text of a mirrored photo

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "best", "history", "config")  # what resume reads


def load_checkpoint(path: str) -> dict:
    """``checkpoint.pt`` -> its dict, loaded with ``weights_only=True`` (tensors and plain
    data only: a pickle that would run code is refused, never run). Every way it can fail is
    one EdgeVLMError naming the file; never torch's advice to load it unsafely."""
    import pickle
    import warnings

    fix = "start without --resume, or use a new --out"
    if os.path.getsize(path) == 0:
        raise EdgeVLMError(f"{path} is empty (0 bytes): an interrupted copy, not a checkpoint; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on the way to refusing them
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: the file would run code
        raise EdgeVLMError(f"{path} is not a plain-tensor checkpoint (it holds pickled code, refused for safety); "
                           f"edgevlm writes only tensors and plain data: {fix}") from exc
    except (EOFError, RuntimeError) as exc:  # a zip without its end: cut short while written or copied
        raise EdgeVLMError(f"{path} is truncated or corrupt (not a complete torch checkpoint); {fix}") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError, ValueError... on files of other kinds
        raise EdgeVLMError(f"{path} is not a torch checkpoint ({type(exc).__name__}); {fix}") from exc
    if not isinstance(state, dict):
        raise EdgeVLMError(f"{path} holds a {type(state).__name__}, not a checkpoint of edgevlm train; {fix}")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise EdgeVLMError(f"{path} is not a checkpoint of edgevlm train: it has no {missing[0]!r} entry; {fix}")
    for key, kind in (("model", dict), ("optimizer", dict), ("scheduler", dict), ("config", dict), ("history", list),
                      ("epoch", int)):
        if not isinstance(state[key], kind):
            raise EdgeVLMError(f"{path}: its {key!r} entry is a {type(state[key]).__name__}, not a {kind.__name__}; {fix}")
    if not isinstance(state.get("settings") or {}, dict):
        raise EdgeVLMError(f"{path}: its 'settings' entry is a {type(state['settings']).__name__}, not a dict; {fix}")
    return state


def checkpoint_state(out: str) -> dict:
    """The checkpoint ``--resume`` continues from: OUT/checkpoint.pt, checked (load_checkpoint)."""
    path = os.path.join(out, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise EdgeVLMError(f"--resume: no {CHECKPOINT_FILE} in {out}; start without --resume")
    return load_checkpoint(path)


def encode_captions(items: list[CaptionedImage], tokenizer: CaptionTokenizer, max_len: int):
    """-> (ids (M, max_len) int64 = bos + words + eos, padded; lengths (M,); image index (M,))."""
    rows, lengths, owners = [], [], []
    for image_index, item in enumerate(items):
        for caption in item.captions:
            ids = [tokenizer.bos_id] + tokenizer.encode(caption)[: max_len - 2] + [tokenizer.eos_id]
            lengths.append(len(ids))
            rows.append(ids + [tokenizer.pad_id] * (max_len - len(ids)))
            owners.append(image_index)
    return np.array(rows, np.int64), np.array(lengths, np.int64), np.array(owners, np.int64)


def caption_loss(model: Captioner, features: torch.Tensor, ids: torch.Tensor, owners: torch.Tensor,
                 pad_id: int, label_smoothing: float) -> torch.Tensor:
    """features (B_img,C,h,w); ids (M,T) bos..eos padded; owners (M,) row -> image. Mean CE."""
    cross_k, cross_v = model.decoder.cross_kv(model.projector(features))  # (L,B_img,H,N,hd)
    return caption_loss_on(model, cross_k, cross_v, ids, owners, pad_id, label_smoothing)


def caption_loss_on(model: Captioner, cross_k: torch.Tensor, cross_v: torch.Tensor, ids: torch.Tensor,
                    owners: torch.Tensor, pad_id: int, label_smoothing: float) -> torch.Tensor:
    """``caption_loss`` on the batch images' cross K/V (L,B_img,H,N,hd), already computed
    (multi-task batches share it with the questions)."""
    cross_k, cross_v = cross_k.index_select(1, owners), cross_v.index_select(1, owners)  # (L,M,H,N,hd)
    logits, _, _ = model.decoder(ids[:, :-1], cross_k, cross_v)  # (M,T-1,V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing)


def answer_loss(model: Captioner, cross_k: torch.Tensor, cross_v: torch.Tensor, ids: torch.Tensor,
                prefix_lens: torch.Tensor, owners: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Prefix-LM VQA loss. cross_k/v (L,B_img,H,N,hd); ids (Q,T) bos q.. sep a.. eos padded;
    prefix_lens (Q,); owners (Q,) row -> image. Mean CE over answer tokens and eos only (no
    label smoothing: the answer's probability drives abstention, so it must stay calibrated)."""
    logits, _, _ = model.decoder(ids[:, :-1], cross_k.index_select(1, owners), cross_v.index_select(1, owners),
                                 prefix_len=prefix_lens)
    targets = ids[:, 1:].clone()
    positions = torch.arange(targets.shape[1]).unsqueeze(0)
    targets[positions < (prefix_lens - 1).unsqueeze(1)] = pad_id  # question tokens are given, not predicted
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=pad_id)


class Trainer:
    def __init__(self, data: str, out: str, cfg: ModelConfig, settings: TrainSettings, cache_dir: str,
                 init_from: str | None = None, dropout: float | None = None, fresh_decoder: bool = False):
        """``init_from``: a model folder to start from (its config and tokenizer are kept,
        but for ``dropout`` when given; ``fresh_decoder``: only its encoder and concept head,
        the projector and decoder start from random weights), e.g. to fine-tune the top encoder blocks after
        training the decoder on frozen ones."""
        self.out, self.settings = out, settings
        torch.set_num_threads(settings.threads)
        torch.manual_seed(settings.seed)
        self.train_items = load_coco_captions(resolve_split(data, "train"))
        self.dev_items = load_coco_captions(resolve_split(data, "dev"))
        if not self.train_items:
            raise EdgeVLMError(f"{resolve_split(data, 'train')} has no images to train on")
        if fresh_decoder and not init_from:
            raise EdgeVLMError("--fresh-decoder keeps the encoder of --init-from DIR: name the model folder to start from")
        self.model, self.tokenizer = self._model_and_tokenizer(cfg, init_from, dropout)
        if fresh_decoder:  # a decoder that memorised its training features is retrained on (fine-tuned) ones
            self.model.reset_decoder()
        self.train_questions = self.dev_questions = []
        if settings.vqa_weight > 0:
            self.train_questions, self.dev_questions = questions_for(self.train_items), questions_for(self.dev_items)
            self.tokenizer = add_words(self.tokenizer, answer_words(self.train_questions)
                                       + frequent_question_words(self.train_questions))
            resize_vocab(self.model, self.tokenizer.vocab_size)
            self.model.cfg = dataclasses.replace(self.model.cfg, sep_id=self.tokenizer.sep_id)
            # written by run(), after a --resume has checked the checkpoint matches

        self.cfg = self.model.cfg
        self.model.encoder.requires_grad_(False)
        # Fine-tuning from block k: cache block k-1's output once, train blocks k.. and the head.
        self.start_block = max(settings.finetune_from_block, 0)
        tap = f"block{self.start_block - 1}" if self.start_block else None
        encoder = self.model.encoder
        self.train_features = cached_features([i.path for i in self.train_items], encoder, self.cfg, cache_dir, "train", tap)
        self.dev_features = cached_features([i.path for i in self.dev_items], encoder, self.cfg, cache_dir, "dev", tap)
        self.mirrored_features = self.mirror_ids = None
        if settings.flip_augment:
            self.mirrored_features = cached_features([i.path for i in self.train_items], encoder, self.cfg, cache_dir,
                                                     "train", tap, flip=True)
            self.mirror_ids = mirror_id_map(self.tokenizer)
        self.ids, self.lengths, self.owners = encode_captions(self.train_items, self.tokenizer, self.cfg.decoder.max_len)
        self.caption_rows = [np.flatnonzero(self.owners == i) for i in range(len(self.train_items))]
        if self.train_questions:
            self.q_ids, self.q_lengths, self.q_prefix, self.q_owners = encode_questions(
                self.train_questions, self.train_items, self.tokenizer, self.cfg.decoder.max_len)
            self.question_rows = [np.flatnonzero(self.q_owners == i) for i in range(len(self.train_items))]
        self.dev_rows = None  # encoded dev questions, made by the first validate_vqa
        self.contrastive = ContrastiveHead(self.cfg.decoder.d_model) if settings.contrastive_weight > 0 else None
        self.cider = None
        if settings.scst_samples:
            limit = self.cfg.decoder.max_len - 2
            self.cider = CiderD([[tuple(self.tokenizer.encode(c)[:limit]) for c in item.captions]
                                 for item in self.train_items])
        self.optimizer = self._optimizer()
        self.ema = None
        if settings.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(self.model, avg_fn=warmed_up_ema(settings.ema_decay), use_buffers=True)
        self.steps_per_epoch = math.ceil(len(self.train_items) / settings.images_per_batch)
        self.scheduler = self._scheduler(self.steps_per_epoch * settings.epochs)
        self.epoch, self.best, self.history = 0, -1.0, []

    def _model_and_tokenizer(self, cfg: ModelConfig, init_from: str | None, dropout: float | None):
        if not init_from:
            tokenizer = self._tokenizer()
            cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, vocab_size=tokenizer.vocab_size))
            return Captioner(cfg, pretrained_encoder=True), tokenizer
        model, tokenizer = load_model(init_from)
        if dropout is not None:  # dropout has no weights: safe to change on a trained model
            model.cfg = dataclasses.replace(model.cfg, decoder=dataclasses.replace(model.cfg.decoder, dropout=dropout))
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = dropout
        self._save_tokenizer(tokenizer)
        return model, tokenizer

    def _optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        params = [p for n, p in self.model.named_parameters() if not n.startswith("encoder.")]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": s.weight_decay, "lr": s.lr},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr": s.lr},
        ]
        if self.start_block:
            top = list(self.model.encoder.top_parameters(self.start_block))
            for p in top:
                p.requires_grad_(True)
            groups.append({"params": top, "weight_decay": 0.0, "lr": s.lr * s.encoder_lr_scale})
        if self.contrastive is not None:
            groups.append({"params": list(self.contrastive.parameters()), "weight_decay": 0.0, "lr": s.lr})
        return torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, 0.98))

    def _scheduler(self, total: int):
        warm = self.settings.warmup_steps

        def schedule(step: int) -> float:  # linear warm-up, then cosine down to 5%
            if step < warm:
                return (step + 1) / warm
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def encoder_top(self, cached: torch.Tensor, model: Captioner | None = None) -> torch.Tensor:
        """Cached features -> the configured tap's feature map (runs the fine-tuned blocks of
        ``model``, default the one training, if any)."""
        if not self.start_block:
            return cached
        return (model or self.model).encoder.features(cached, self.cfg.vision.feature, start_block=self.start_block)

    def evaluated_model(self) -> Captioner:
        """The weights validated and saved: the moving average when on, else the trained ones."""
        return self.ema.module if self.ema is not None else self.model

    def batch_features(self, images: np.ndarray, mirrored: np.ndarray | None) -> torch.Tensor:
        """Cached features (B,C,h,w) of the sorted ``images``, mirrored where ``mirrored`` (B,) is set."""
        features = self.train_features[images]
        if mirrored is not None and mirrored.any():
            features = np.where(mirrored[:, None, None, None], self.mirrored_features[images], features)
        return self.encoder_top(torch.from_numpy(features.astype(np.float32)))

    def mirror_rows(self, ids: np.ndarray, owners: np.ndarray, mirrored: np.ndarray | None) -> np.ndarray:
        """ids (M,T) whose rows belong to sorted-image positions ``owners`` (M,): the rows of
        mirrored images get "left"/"right" swapped."""
        if mirrored is None or not mirrored.any():
            return ids
        return np.where(mirrored[owners][:, None], self.mirror_ids[ids], ids)

    def _tokenizer(self) -> CaptionTokenizer:
        path = os.path.join(self.out, "tokenizer.json")
        if os.path.isfile(path):  # resume: the vocabulary must not change under the weights
            return CaptionTokenizer.load(path)
        tokenizer = train_tokenizer([c for item in self.train_items for c in item.captions], self.settings.min_word_freq)
        self._save_tokenizer(tokenizer)
        return tokenizer

    def _save_tokenizer(self, tokenizer: CaptionTokenizer) -> None:
        os.makedirs(self.out, exist_ok=True)
        with atomic_path(os.path.join(self.out, "tokenizer.json")) as tmp:
            tokenizer.tokenizer.save(tmp)

    def resume(self, state: dict | None = None) -> None:
        """Continue from OUT/checkpoint.pt (``state``: that file, already read by
        ``checkpoint_state``, so that a bad one fails before the features are cached)."""
        path = os.path.join(self.out, CHECKPOINT_FILE)
        state = state if state is not None else checkpoint_state(self.out)
        saved = state.get("settings") or {}
        for name in ("vqa_weight", "contrastive_weight"):  # the objectives decide vocabulary and heads
            if (saved.get(name, 0.0) > 0) != (getattr(self.settings, name) > 0):
                raise EdgeVLMError(f"--resume: {path} was trained with {name}={saved.get(name, 0.0)}; resume with "
                                   f"--{name.replace('_', '-')} {saved.get(name, 0.0)} or use a new --out")
        if self.ema is not None and state.get("ema") is None:
            raise EdgeVLMError(f"--resume: {path} holds no moving average (it was trained without --ema-decay); "
                               "resume without --ema-decay or use a new --out")
        if state["config"] != self.cfg.to_dict():
            raise EdgeVLMError(f"--resume: {path} was trained with another model config; use a new --out")
        try:  # the config matched, so only a hand-edited file gets here
            self.model.load_state_dict(state["model"])
            if self.contrastive is not None:
                self.contrastive.load_state_dict(state["contrastive"])  # present: checked above
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeVLMError(f"--resume: {path} does not fit this model ({first}); use a new --out") from exc
        self.epoch, self.best, self.history = state["epoch"], state["best"], state["history"]
        log.info("resumed from epoch %d (best dev CIDEr %.3f)", self.epoch, self.best)

    def _save_checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best": self.best,
            "history": self.history,
            "config": self.cfg.to_dict(),
            "settings": dataclasses.asdict(self.settings),
            "contrastive": None if self.contrastive is None else self.contrastive.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }
        with atomic_path(os.path.join(self.out, CHECKPOINT_FILE)) as tmp:
            torch.save(state, tmp)

    def train_epoch(self) -> float:
        s = self.settings
        self.model.train()
        self.model.encoder.eval()  # BatchNorm keeps its ImageNet statistics, fine-tuned or not
        rng = np.random.default_rng(s.seed * 1000 + self.epoch)
        order = rng.permutation(len(self.train_items))
        losses, rewards, parts = [], [], {}
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.epoch + 1}/{s.epochs}", unit="step")
        for step in bar:
            images = order[step * s.images_per_batch : (step + 1) * s.images_per_batch]
            mirrored = rng.random(len(images)) < 0.5 if self.mirror_ids is not None else None  # per sorted image
            rows = np.concatenate([self.caption_rows[i] for i in images])
            longest = int(self.lengths[rows].max())  # pad to this batch's longest caption only
            positions = np.searchsorted(np.sort(images), self.owners[rows])
            ids = torch.from_numpy(self.mirror_rows(self.ids[rows, :longest], positions, mirrored))
            owners = torch.from_numpy(positions)
            features = self.batch_features(np.sort(images), mirrored)
            if self.cider is not None:
                loss, reward = scst_loss(self.model, features, np.sort(images).tolist(), self.cider, s.scst_samples,
                                         s.scst_max_len, self.cfg.bos_id, self.cfg.eos_id, self.cfg.pad_id, self.cfg.unk_id)
                rewards.append(reward)
            else:
                loss = self.multitask_loss(features, images, ids, owners, parts, mirrored)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            losses.append(loss.item())
            if step % 20 == 0:
                shown = {"loss": f"{np.mean(losses[-50:]):.3f}", "lr": f"{self.scheduler.get_last_lr()[0]:.1e}"}
                if rewards:
                    shown["cider_reward"] = f"{np.mean(rewards[-50:]):.3f}"
                shown.update({name: f"{np.mean(values[-50:]):.3f}" for name, values in parts.items()})
                bar.set_postfix(shown)
        return float(np.mean(losses))

    def multitask_loss(self, features: torch.Tensor, images: np.ndarray, ids: torch.Tensor, owners: torch.Tensor,
                       parts: dict, mirrored: np.ndarray | None = None) -> torch.Tensor:
        """Caption loss, plus the weighted VQA and contrastive losses when they are on.
        features (B_img,...) of the sorted batch images; ids/owners: their caption rows;
        mirrored (B_img,) bool or None: which images are shown mirrored."""
        s = self.settings
        visual = self.model.projector(features)  # (B_img,N,d)
        cross_k, cross_v = self.model.decoder.cross_kv(visual)
        loss = caption_loss_on(self.model, cross_k, cross_v, ids, owners, self.cfg.pad_id, s.label_smoothing)
        if not self.train_questions and self.contrastive is None:
            return loss
        parts.setdefault("cap", []).append(loss.item())
        sorted_images = np.sort(images)
        if self.train_questions:
            rows = np.concatenate([self.question_rows[i] for i in sorted_images])
            if len(rows):
                longest = int(self.q_lengths[rows].max())
                q_positions = np.searchsorted(sorted_images, self.q_owners[rows])
                q_ids = self.mirror_rows(self.q_ids[rows, :longest], q_positions, mirrored)
                vqa = answer_loss(self.model, cross_k, cross_v, torch.from_numpy(q_ids),
                                  torch.from_numpy(self.q_prefix[rows]), torch.from_numpy(q_positions), self.cfg.pad_id)
                parts.setdefault("vqa", []).append(vqa.item())
                loss = loss + s.vqa_weight * vqa
        if self.contrastive is not None:
            owner_of_row = owners.numpy()
            first = [int(np.flatnonzero(owner_of_row == k)[0]) for k in range(len(sorted_images))]  # a caption each
            words = ids[first]
            mask = words > self.cfg.eos_id  # not pad/unk/bos/eos
            nce = self.contrastive(visual, self.model.decoder.tok_emb(words), mask)
            parts.setdefault("nce", []).append(nce.item())
            loss = loss + s.contrastive_weight * nce
        return loss

    @torch.no_grad()
    def validate_vqa(self) -> dict:
        """Dev VQA accuracy (greedy answers, no abstention) through the runtime's search."""
        model = self.evaluated_model()
        model.eval()
        if self.dev_rows is None:  # the same every epoch: encoded once
            self.dev_rows = encode_questions(self.dev_questions, self.dev_items, self.tokenizer, self.cfg.decoder.max_len)
        ids, _, prefixes, owners = self.dev_rows
        banned = search_settings(self.cfg).banned_ids  # pad, unk, bos, [SEP]
        answers = {}
        for length in np.unique(prefixes):
            same = np.flatnonzero(prefixes == length)
            for start in range(0, len(same), 256):
                rows = same[start : start + 256]
                feats = self.encoder_top(torch.from_numpy(self.dev_features[owners[rows]].astype(np.float32)), model)
                found = answer_from_visual(model, model.projector(feats), ids[rows, :length], banned)
                for row, answer in zip(rows, found):
                    answers[self.dev_questions[row]["question_id"]] = (self.tokenizer.decode(answer.ids), answer.probability)
        return score_answers(self.dev_questions, answers)

    @torch.no_grad()
    def validate(self) -> dict:
        model = self.evaluated_model()
        model.eval()
        n = min(self.settings.eval_images, len(self.dev_items))
        features = np.concatenate([self.encoder_top(torch.from_numpy(self.dev_features[i : i + 100].astype(np.float32)),
                                                    model).numpy() for i in range(0, n, 100)])
        ids = generate_from_features(model, features, search_settings(self.cfg, beam_size=1))
        hyps = {i: self.tokenizer.decode(t) for i, t in enumerate(ids)}
        refs = {i: list(self.dev_items[i].captions) for i in range(n)}
        return score_captions(refs, hyps, only=("BLEU", "CIDEr"))

    def run(self) -> dict:
        if self.train_questions:  # the extended vocabulary ([SEP], answer words) goes with the run
            self._save_tokenizer(self.tokenizer)
        while self.epoch < self.settings.epochs:
            started = time.time()
            train_loss = self.train_epoch()
            scores = self.validate()
            self.epoch += 1
            row = {"epoch": self.epoch, "train_loss": train_loss, "seconds": time.time() - started,
                   "dev_greedy_BLEU-4": scores["BLEU-4"], "dev_greedy_CIDEr": scores["CIDEr"]}
            criterion = scores["CIDEr"]
            if self.dev_questions:
                vqa = self.validate_vqa()
                row.update({f"dev_vqa_{k}": v for k, v in vqa.items() if not isinstance(v, dict)})
                row.update({f"dev_vqa_{t}": v for t, v in vqa["by_type"].items()})
                criterion += vqa["accuracy"]
            self.history.append(row)
            log.info("epoch %d: %s", self.epoch, json.dumps(row))
            kept = self.evaluated_model()
            save_model(kept, self.tokenizer, os.path.join(self.out, f"epoch-{self.epoch}"), extra={"history": self.history})
            if criterion > self.best:
                self.best = criterion
                save_model(kept, self.tokenizer, os.path.join(self.out, "best"), extra={"history": self.history})
            self._save_checkpoint()
            write_json(os.path.join(self.out, "history.json"), self.history)
        best_row = max(self.history, key=lambda r: r["dev_greedy_CIDEr"] + r.get("dev_vqa_accuracy", 0.0))
        return {"best_dev_greedy_CIDEr": best_row["dev_greedy_CIDEr"], "best_epoch": best_row["epoch"], "epochs": self.epoch, "out": os.path.join(self.out, "best")}


def mirror_id_map(tokenizer: CaptionTokenizer) -> np.ndarray:
    """(V,) int64 id -> the id it becomes in a mirrored photo's text ("left" <-> "right";
    the identity for every other id, and for pairs the vocabulary lacks)."""
    mapping = np.arange(tokenizer.vocab_size, dtype=np.int64)
    for a, b in MIRRORED_WORDS:
        id_a, id_b = tokenizer.tokenizer.token_to_id(a), tokenizer.tokenizer.token_to_id(b)
        if id_a is not None and id_b is not None:
            mapping[id_a], mapping[id_b] = id_b, id_a
    return mapping


def warmed_up_ema(decay: float):
    """AveragedModel's ``avg_fn``: an exponential moving average whose decay grows as
    min(decay, (1 + n) / (10 + n)) over the n updates so far (TensorFlow's
    ExponentialMovingAverage with num_updates). torch's get_ema_multi_avg_fn keeps the decay
    fixed from the first step, so a model trained from random weights would carry 0.998^t of
    its random start in the average (60% after an epoch at 0.998)."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged) -> torch.Tensor:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return averaged * d + current * (1 - d)

    return average
