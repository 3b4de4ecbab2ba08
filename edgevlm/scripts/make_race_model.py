"""Write a full-size, random-initialised ViT-base/16 + GPT-2-small VisionEncoderDecoder: the
shape of ``nlpconnect/vit-gpt2-image-captioning`` (~239M parameters), for the HF speed race.

    python -m edgevlm.scripts.make_race_model OUT_DIR [--seed 0]

Nothing comes from the Hugging Face hub: the weights are random (seeded), the tokenizer is
trained here. What the folder holds, as the real checkpoint's folder does:

- ``config.json`` + ``model.safetensors``: encoder ViT-base/16 at 224 px (12 layers, 768
  wide, 12 heads, MLP 3072, qkv bias), decoder GPT-2 small (12 layers, 768 wide, 12 heads,
  1024 positions, vocab 50257) with cross-attention; bos = eos = pad = decoder_start = 50256.
- a GPT-2-style byte-level BPE tokenizer (``tokenizer.json``, ``vocab.json``,
  ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``) trained with
  ``tokenizers`` on a few hundred template captions. Such a corpus only supports a few
  hundred merges, far fewer than GPT-2's 50000, so ids from the end of the learned vocab up
  to 50255 are placeholders (``<|unused_N|>``, never produced by encoding) and 50256 is
  ``<|endoftext|>``, as in GPT-2: the model's 50257-row embedding and every special id are
  then exactly those of the real checkpoint. A random model generates placeholders freely;
  the race compares ids, the text is only for eyes.
- ``preprocessor_config.json``: ViTImageProcessor, 224x224, bilinear, rescale 1/255, mean =
  std = 0.5 (the real checkpoint's).
- ``generation_config.json``: greedy (num_beams 1, no sampling), max_new_tokens 20. The real
  checkpoint says num_beams 4, max_length 16; the race forces exactly 20 greedy tokens on
  every peer, so greedy is what this folder says too.

One departure from GPT-2's init: the decoder's weights are drawn with std 0.1
(``initializer_range``), not 0.02. At 0.02 the residual stream of a random GPT-2 is little
more than its input token's embedding, and the LM head is that same (tied) embedding, so
every token predicts itself: greedy decoding repeats one token 20 times whatever the image
(measured: ``[20841] * 12 + [48267] * 8``), and every peer, INT8 too, "agrees". At 0.1 the
blocks dominate and the 20 ids vary with the image, so the race's id comparison means
something. Speed does not depend on the values; ``--decoder-init-std 0.02`` gives GPT-2's.

Deterministic: the same seed gives byte-identical safetensors (the race caches its exported
models by their sha256). Written with transformers 5.x; also loads with 4.57 (the optimum
venv): ``--check`` loads it back with the running transformers and generates a few tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random

from edgevlm.errors import EdgeVLMError

GPT2_VOCAB = 50257
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = GPT2_VOCAB - 1  # 50256: GPT-2's only special token, last id
DECODER_INIT_STD = 0.1  # not GPT-2's 0.02: see the module docstring

# Template pieces for the tokenizer corpus: caption-like English, so merges are word pieces
# a caption would use ("a", " dog", " running", ...).
_SUBJECTS = ["a man", "a woman", "a young boy", "a little girl", "two dogs", "a black dog", "a brown dog",
             "a group of people", "a child", "an old man", "a cyclist", "a skateboarder", "a white cat",
             "three children", "a person", "a crowd", "a football player", "a surfer", "a horse", "a couple"]
_VERBS = ["is running", "is walking", "is sitting", "is standing", "is jumping", "is playing", "is riding a bike",
          "is climbing a rock", "is swimming", "are playing", "is holding a ball", "is looking at the camera",
          "is eating", "is smiling", "is lying", "is throwing a frisbee", "is wearing a red shirt"]
_PLACES = ["on the beach", "in the snow", "in a park", "on a city street", "in the water", "on the grass",
           "near a building", "at the table", "in front of a crowd", "on a wooden bench", "in a field",
           "down a hill", "across the road", "by the lake", "in the kitchen", "under a tree"]


def caption_corpus(n: int, seed: int) -> list[str]:
    """``n`` template captions, seeded: the tokenizer's training text."""
    rng = random.Random(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_PLACES)} .".capitalize() for _ in range(n)]


def train_tokenizer(seed: int, sentences: int = 400):
    """A GPT-2-style byte-level BPE (tokenizers.Tokenizer) with exactly 50257 ids: the learned
    vocab, placeholders, then <|endoftext|> at 50256."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # The full byte alphabet as the initial vocab (as GPT-2): any text encodes, nothing is unk.
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(caption_corpus(sentences, seed), trainer)

    # Pad the learned vocab to 50256 entries through the serialized form: BPE keeps whatever
    # vocab it is given, and entries that no merge reaches are simply never produced.
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    learned = len(vocab)
    if learned > END_OF_TEXT_ID:
        raise EdgeVLMError(f"the trained vocab has {learned} entries, more than GPT-2's {END_OF_TEXT_ID}")
    for i in range(learned, END_OF_TEXT_ID):
        vocab[f"<|unused_{i}|>"] = i
    padded = Tokenizer.from_str(json.dumps(spec))
    padded.add_special_tokens([END_OF_TEXT])
    if padded.token_to_id(END_OF_TEXT) != END_OF_TEXT_ID or padded.get_vocab_size() != GPT2_VOCAB:
        raise EdgeVLMError(f"{END_OF_TEXT} got id {padded.token_to_id(END_OF_TEXT)}, vocab {padded.get_vocab_size()}")
    return padded, learned


def write_tokenizer(tokenizer, out_dir: str) -> None:
    """Every file either transformers (4.x fast or slow GPT2Tokenizer, 5.x) reads for GPT-2,
    written by hand so no version's save_pretrained decides the format."""
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    spec = json.loads(tokenizer.to_str())
    vocab = dict(spec["model"]["vocab"])
    vocab[END_OF_TEXT] = END_OF_TEXT_ID
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    merges = spec["model"]["merges"]  # ["a b", ...] or [["a", "b"], ...] by tokenizers version
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines((m if isinstance(m, str) else " ".join(m)) + "\n" for m in merges)
    special = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT, "pad_token": END_OF_TEXT}
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024, "add_prefix_space": False,
              "add_bos_token": False, "clean_up_tokenization_spaces": False, **special}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def build_model(seed: int, decoder_init_std: float = DECODER_INIT_STD):
    """The random-init VisionEncoderDecoderModel, eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTModel, VisionEncoderDecoderModel

    torch.manual_seed(seed)
    encoder_config = ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                               num_attention_heads=12, intermediate_size=3072, qkv_bias=True)
    decoder_config = GPT2Config(vocab_size=GPT2_VOCAB, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                bos_token_id=END_OF_TEXT_ID, eos_token_id=END_OF_TEXT_ID,
                                is_decoder=True, add_cross_attention=True, initializer_range=decoder_init_std)
    model = VisionEncoderDecoderModel(encoder=ViTModel(encoder_config), decoder=GPT2LMHeadModel(decoder_config))
    for config in (model.config, model.config.decoder):
        config.decoder_start_token_id = END_OF_TEXT_ID
        config.pad_token_id = END_OF_TEXT_ID
        config.bos_token_id = END_OF_TEXT_ID
        config.eos_token_id = END_OF_TEXT_ID
    return model.eval()


def write_generation_config(model, out_dir: str) -> None:
    from transformers import GenerationConfig

    generation = GenerationConfig(decoder_start_token_id=END_OF_TEXT_ID, bos_token_id=END_OF_TEXT_ID,
                                  eos_token_id=END_OF_TEXT_ID, pad_token_id=END_OF_TEXT_ID,
                                  num_beams=1, do_sample=False, max_new_tokens=20)
    model.generation_config = generation
    generation.save_pretrained(out_dir)


def write_image_processor(out_dir: str) -> None:
    """preprocessor_config.json by hand: transformers 5.x would name its PIL class
    (ViTImageProcessorPil), which 4.57 does not know; both map ViTImageProcessor."""
    config = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 224, "width": 224},
              "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def make_race_model(out_dir: str, seed: int = 0, decoder_init_std: float = DECODER_INIT_STD) -> dict:
    """Write the folder; returns a summary (parameters, learned vocab, files)."""
    os.makedirs(out_dir, exist_ok=True)
    tokenizer, learned = train_tokenizer(seed)
    write_tokenizer(tokenizer, out_dir)
    model = build_model(seed, decoder_init_std)
    write_generation_config(model, out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_image_processor(out_dir)
    return {"out_dir": out_dir, "parameters": sum(p.numel() for p in model.parameters()),
            "learned_vocab": learned, "vocab": GPT2_VOCAB, "files": sorted(os.listdir(out_dir))}


def check(model_dir: str, image: str | None = None) -> dict:
    """Load the folder back with the running transformers (config, model, tokenizer, slow
    image processor) and greedily generate 5 tokens: proof this version reads it."""
    import numpy as np
    import torch
    import transformers
    from transformers import AutoTokenizer, VisionEncoderDecoderModel

    from edgevlm.scripts.race_peer import slow_image_processor

    model = VisionEncoderDecoderModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = slow_image_processor(model_dir)
    if image:
        from PIL import Image

        picture = Image.open(image).convert("RGB")
    else:
        picture = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    pixels = processor(images=picture, return_tensors="pt").pixel_values
    with torch.inference_mode():
        ids = model.generate(pixels, max_new_tokens=5, min_new_tokens=5, num_beams=1, do_sample=False)
    encoded = tokenizer("a dog is running on the beach .")["input_ids"]
    return {"transformers": transformers.__version__, "processor": type(processor).__name__,
            "tokenizer": type(tokenizer).__name__, "vocab": len(tokenizer), "eos": tokenizer.eos_token_id,
            "pixels_sum": float(pixels.double().sum()), "ids": ids[0].tolist(),
            "encoded": encoded, "roundtrip": tokenizer.decode(encoded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decoder-init-std", type=float, default=DECODER_INIT_STD,
                        help="std of the decoder's random weights (GPT-2's own is 0.02; see above)")
    parser.add_argument("--check", action="store_true",
                        help="only load OUT_DIR back with this python's transformers and generate 5 tokens")
    parser.add_argument("--image", help="with --check: caption this image instead of seeded noise")
    args = parser.parse_args()
    result = check(args.out_dir, args.image) if args.check else make_race_model(args.out_dir, args.seed, args.decoder_init_std)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
