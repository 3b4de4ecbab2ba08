"""A tiny random-init captioner folder (32-wide, 2 layers, 64 px): what tests export and
run end to end in seconds, and what the family round-trip test builds."""

from __future__ import annotations

CAPTIONS = (
    "a black dog runs on the grass",
    "a dog plays with a red ball",
    "two children play in the water",
    "a man rides a bike down the street",
    "a woman in a red shirt sits on a bench",
    "a brown dog jumps over a log",
)


def write_tiny_captioner(out_dir: str, seed: int = 0) -> str:
    """Write a VQA-capable tiny model folder ([SEP], "yes"/"no" in its vocabulary) -> out_dir."""
    import torch

    from edgevlm.config import DecoderConfig, ModelConfig, PreprocessConfig
    from edgevlm.model_io import save_model
    from edgevlm.models.captioner import Captioner
    from edgevlm.tokenizer_training import add_words, train_tokenizer

    tokenizer = add_words(train_tokenizer(list(CAPTIONS), min_frequency=1), ["yes", "no", "two"])
    cfg = ModelConfig(
        sep_id=tokenizer.sep_id,
        decoder=DecoderConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                              max_len=12, dropout=0.0),
        preprocess=PreprocessConfig(image_size=64),
    )
    torch.manual_seed(seed)
    model = Captioner(cfg)
    with torch.no_grad():  # sharpen the random output layer so greedy choices are not near-ties
        model.decoder.tok_emb.weight.mul_(20.0)
    save_model(model, tokenizer, out_dir)
    return out_dir
