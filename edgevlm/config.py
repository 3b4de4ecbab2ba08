"""Model configuration as frozen dataclasses; ``config.json`` in a model folder is their dict.

The config alone rebuilds the module (no pickles): ``ModelConfig.from_dict(json.load(f))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edgevlm.errors import EdgeVLMError

# EfficientNet-Lite0 feature taps: name -> (channels, stride). "head" is the 1x1 conv to 1280
# channels that the ImageNet classifier reads; the others are block outputs.
VISION_FEATURES = {
    "head": (1280, 32),
    "block15": (320, 32),
    "block10": (112, 16),
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise EdgeVLMError(f"invalid config: {message}")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a photo becomes the encoder's input: RGB, squashed to size x size, (x/255-mean)/std."""

    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    color_order: str = "RGB"
    resize_mode: str = "squash"  # the whole frame, aspect ratio not kept (as Flickr8k here)
    interpolation: str = "area"  # cv2.INTER_AREA: alias-free when shrinking camera frames

    def __post_init__(self):
        _require(self.image_size % 32 == 0, f"preprocess.image_size={self.image_size} must be a multiple of 32")
        _require(self.color_order == "RGB", "preprocess.color_order must be 'RGB'")
        _require(self.resize_mode == "squash", "preprocess.resize_mode must be 'squash'")
        _require(self.interpolation in ("area", "linear"), "preprocess.interpolation must be 'area' or 'linear'")


@dataclass(frozen=True)
class VisionConfig:
    """EfficientNet-Lite0 tapped at ``feature``; tokens = (image_size / stride)^2."""

    feature: str = "head"

    def __post_init__(self):
        _require(self.feature in VISION_FEATURES, f"vision.feature={self.feature!r} is not one of {sorted(VISION_FEATURES)}")

    @property
    def channels(self) -> int:
        return VISION_FEATURES[self.feature][0]

    def grid(self, image_size: int) -> int:
        return image_size // VISION_FEATURES[self.feature][1]


@dataclass(frozen=True)
class DecoderConfig:
    """Pre-LN transformer decoder with cross-attention; ``max_len`` counts bos and eos."""

    vocab_size: int = 3000
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024
    max_len: int = 32
    dropout: float = 0.1

    def __post_init__(self):
        _require(self.d_model % self.n_heads == 0, f"decoder.d_model={self.d_model} must divide by n_heads={self.n_heads}")
        _require(self.vocab_size > 4, "decoder.vocab_size must exceed the 4 special tokens")
        _require(self.max_len >= 4, "decoder.max_len must be at least 4")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class GenerationConfig:
    """Search defaults; the runtime manifest copies these."""

    beam_size: int = 3
    max_new_tokens: int = 30
    no_repeat_ngram: int = 3  # a guard against "a dog a dog a dog" loops
    length_penalty: float = 0.5  # beam score = sum(log p) / length ** length_penalty (tuned on dev)


@dataclass(frozen=True)
class ConceptConfig:
    """Object categories the concept head scores from the feature map (empty: no head).

    ``words[i]`` are the words that name ``names[i]`` (the lexicon's synonym group): the
    runtime reads them to route "is there a X?" to the head and to keep a caption from
    naming an object the head is sure is absent.
    """

    names: tuple[str, ...] = ()
    words: tuple[tuple[str, ...], ...] = ()
    hidden: int = 256
    sharpness: float = 0.5  # log-sum-exp pooling over locations: ~mean at 0, max as it grows (0.5: measured best)
    # Tuned on dev (edgevlm train-concepts): a caption may not name a concept below ban_below;
    # an existence answer less sure than abstain_below is "I'm not sure"; a novelty (1 - the
    # largest concept probability)
    # above unfamiliar_above makes a caption hedged ("I'm not sure what this is. My best guess: ...").
    ban_below: float = 0.6
    abstain_below: float = 0.5
    unfamiliar_above: float = 0.0  # 0: never hedge

    def __post_init__(self):
        _require(len(self.names) == len(self.words), "concepts.words needs one word list per concept name")
        _require(len(set(self.names)) == len(self.names), "concepts.names must be unique")


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    bos_id: int = 2
    eos_id: int = 3
    pad_id: int = 0
    unk_id: int = 1
    sep_id: int | None = None  # ends a VQA question; None: a captioning-only model

    @property
    def num_visual_tokens(self) -> int:
        return self.vision.grid(self.preprocess.image_size) ** 2

    @property
    def banned_ids(self) -> tuple[int, ...]:
        """Tokens search never generates: pad, unk, bos, and [SEP] for VQA models."""
        return (self.pad_id, self.unk_id, self.bos_id) + ((self.sep_id,) if self.sep_id is not None else ())

    def search_defaults(self, capacity: int | None = None):
        """The manifest's ``generation`` section for this model (runtime.manifest.Generation):
        one definition for the engine's search and the PyTorch model's."""
        from edgevlm.runtime.manifest import Generation

        g, capacity = self.generation, capacity or self.decoder.max_len
        return Generation(beam_size=g.beam_size, max_new_tokens=min(g.max_new_tokens, capacity - 1),
                          no_repeat_ngram=g.no_repeat_ngram, length_penalty=g.length_penalty,
                          banned_ids=self.banned_ids, no_repeat_word=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        try:
            pre = dict(data.get("preprocess", {}))
            for key in ("mean", "std"):
                if key in pre:
                    pre[key] = tuple(pre[key])
            concepts = dict(data.get("concepts", {}))
            concepts["names"] = tuple(concepts.get("names", ()))
            concepts["words"] = tuple(tuple(w) for w in concepts.get("words", ()))
            top = {k: v for k, v in data.items() if k not in ("vision", "decoder", "preprocess", "generation",
                                                              "concepts")}
            return cls(
                vision=VisionConfig(**data.get("vision", {})),
                decoder=DecoderConfig(**data.get("decoder", {})),
                preprocess=PreprocessConfig(**pre),
                generation=GenerationConfig(**data.get("generation", {})),
                concepts=ConceptConfig(**concepts),
                **top,
            )
        except TypeError as exc:
            raise EdgeVLMError(f"invalid config: {exc}; check config.json against edgevlm/config.py") from exc
