"""Hugging Face image processors' preprocessing, in numpy + Pillow (no torch, no transformers).

Reproduces, bit for bit, the PIL-backend ("slow", ``use_fast=False``) image processors of
transformers 5 for ViT (also TrOCR's VisionEncoderDecoder), DeiT, BEiT, BLIP and CLIP (which GIT
uses). What those processors do to one image, in order (transformers' ``PilBackend``):

1. ``convert_to_rgb`` (when ``do_convert_rgb``): a PIL image with alpha is composited onto white
   with ``Image.alpha_composite``, a grayscale one is replicated to RGB.
2. resize: the uint8 array goes back into a PIL image and ``Image.resize`` runs on it (uint8,
   Pillow's fixed-point resampling), to (height, width), or with the shortest edge set to N and the
   long edge ``int(N * long / short)`` (truncated, not rounded).
3. center crop on the uint8 array: top = (h - crop_h) // 2; a crop larger than the image pads it
   with zeros, the image placed ceil(pad / 2) from the top/left.
4. rescale: ``uint8 -> float64 * rescale_factor -> float32``.
5. normalize: ``(x - float32(mean)) / float32(std)``, all in float32.

Steps 4 and 5 map each uint8 value to one float32 per channel, so they run here as a 256-entry
lookup table per channel, computed with those exact dtypes and operations: the same IEEE
operations on the same operands, hence the same bits, and one gather instead of four passes.
Steps 1-2 call the same Pillow functions, so the one place results can differ is a different
Pillow on the two sides (the reference made with another Pillow version, or with Pillow-SIMD,
whose resampling rounds differently). Nothing else here rounds differently from transformers.

Input is what OpenCV gives: BGR uint8. Pillow resamples each channel alone with the same
coefficients, so the BGR image is resized as it is and the channel order is swapped in the
lookup's gather (no full-size RGB copy); a grayscale image is resized as one channel and
replicated in the gather.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from edgevlm.errors import EdgeVLMError

# Pillow's filter numbers, as preprocessor_config.json stores ``resample``.
RESAMPLE_CODES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
RESIZE_MODES = ("none", "exact", "shortest_edge")

_IMAGENET_STANDARD = (0.5, 0.5, 0.5)
_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Each supported class's defaults (its class attributes in transformers 5 over BaseImageProcessor's),
# in preprocessor_config.json's own vocabulary: what a missing key means.
_BASE_DEFAULTS = {"do_resize": None, "size": None, "default_to_square": True, "resample": None,
                  "do_center_crop": None, "crop_size": None, "do_rescale": None, "rescale_factor": 1 / 255,
                  "do_normalize": None, "image_mean": None, "image_std": None, "do_convert_rgb": None}
_STEPS_ON = {"do_resize": True, "do_rescale": True, "do_normalize": True}
_SQUARE_224 = {"height": 224, "width": 224}
_CLASS_DEFAULTS = {
    "ViTImageProcessor": {**_STEPS_ON, "resample": 2, "size": _SQUARE_224,
                          "image_mean": _IMAGENET_STANDARD, "image_std": _IMAGENET_STANDARD},
    "DeiTImageProcessor": {**_STEPS_ON, "resample": 3, "size": {"height": 256, "width": 256},
                           "do_center_crop": True, "crop_size": _SQUARE_224,
                           "image_mean": _IMAGENET_STANDARD, "image_std": _IMAGENET_STANDARD},
    "BeitImageProcessor": {**_STEPS_ON, "resample": 3, "size": _SQUARE_224,
                           "do_center_crop": False, "crop_size": _SQUARE_224,
                           "image_mean": _IMAGENET_STANDARD, "image_std": _IMAGENET_STANDARD},
    "BlipImageProcessor": {**_STEPS_ON, "resample": 3, "size": {"height": 384, "width": 384},
                           "image_mean": _OPENAI_CLIP_MEAN, "image_std": _OPENAI_CLIP_STD, "do_convert_rgb": True},
    "CLIPImageProcessor": {**_STEPS_ON, "resample": 3, "size": {"shortest_edge": 224}, "default_to_square": False,
                           "do_center_crop": True, "crop_size": _SQUARE_224,
                           "image_mean": _OPENAI_CLIP_MEAN, "image_std": _OPENAI_CLIP_STD, "do_convert_rgb": True},
}
SUPPORTED_PROCESSORS = tuple(sorted(_CLASS_DEFAULTS))

# Keys that never change pixel_values of one image: provenance, and BEiT's label reduction, which
# transformers applies to segmentation maps only (it forces do_reduce_labels=False for images).
_IGNORED_KEYS = {"image_processor_type", "feature_extractor_type", "processor_class", "_processor_class",
                 "image_seq_length", "return_tensors", "device", "disable_grouping", "input_data_format",
                 "do_reduce_labels", "reduce_labels", "pad_size"}


@dataclass(frozen=True)
class HFImageSpec:
    """What a slow HF image processor does to one image.

    resize: "none", "exact" (squash to ``size`` = (height, width)) or "shortest_edge" (``size`` =
        (N,): the short edge becomes N, the long edge int(N * long / short)); ``size`` is () for "none".
    resample: Pillow filter name, a key of RESAMPLE_CODES; None when resize is "none".
    crop: center crop (height, width), or None for none.
    rescale_factor: pixels are multiplied by it (1/255), or None for no rescale.
    mean, std: per-channel (R, G, B) normalization, or both None for none.
    convert_rgb: whether an alpha channel is composited onto white (HF's convert_to_rgb); without
        it the alpha is dropped, as ``PIL.Image.convert("RGB")`` does (what a caller of a processor
        without do_convert_rgb must do: such a processor refuses 4 channels).
    """

    resize: str
    size: tuple[int, ...]
    resample: str | None
    crop: tuple[int, int] | None
    rescale_factor: float | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    convert_rgb: bool

    def __post_init__(self):
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_ints("size", self.size, {"none": 0, "exact": 2, "shortest_edge": 1}[self.resize])
        if self.resize == "none" and self.resample is not None:
            raise ValueError(f"HFImageSpec: resample={self.resample!r} without a resize; use None")
        if self.resize != "none":
            _check_choice("resample", self.resample, tuple(RESAMPLE_CODES))
        if self.crop is not None:
            _check_ints("crop", self.crop, 2)
        if self.rescale_factor is not None:
            _check_floats("rescale_factor", (self.rescale_factor,))
        if (self.mean is None) != (self.std is None):
            raise ValueError("HFImageSpec: mean and std must both be given or both be None")
        if self.mean is not None:
            _check_floats("mean", self.mean, 3)
            _check_floats("std", self.std, 3)
            if 0 in self.std:
                raise ValueError(f"HFImageSpec: std {self.std} has a zero")
        if not isinstance(self.convert_rgb, bool):
            raise ValueError(f"HFImageSpec: convert_rgb must be a bool, got {self.convert_rgb!r}")
        # JSON integers (a mean of [0, 0, 0]) become floats, so equal specs compare and serialize alike.
        for name in ("mean", "std"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.rescale_factor is not None:
            object.__setattr__(self, "rescale_factor", float(self.rescale_factor))

    def to_json(self) -> dict:
        """The spec as a JSON-ready dict (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict) -> HFImageSpec:
        """Inverse of to_json; a missing or unknown field, or a wrong type, raises ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"HFImageSpec: expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"HFImageSpec: unknown field(s) {', '.join(unknown)}; fields are {', '.join(names)}")
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"HFImageSpec: missing field(s) {', '.join(missing)}")
        values = {}
        for name in names:
            value = data[name]
            if name in ("size", "crop", "mean", "std"):
                if value is None and name != "size":
                    values[name] = None
                    continue
                if not isinstance(value, list):
                    raise ValueError(f"HFImageSpec: {name} must be a list, got {value!r}")
                value = tuple(value)
            elif (name == "resize" or (name == "resample" and value is not None)) and not isinstance(value, str):
                raise ValueError(f"HFImageSpec: {name} must be a string, got {value!r}")
            values[name] = value
        return cls(**values)

    @classmethod
    def from_preprocessor_config(cls, config: dict) -> HFImageSpec:
        """The spec a ``preprocessor_config.json`` dict describes, read as transformers 5 reads it:
        a missing key takes the processor class's default; an explicit null stays None (transformers'
        from_dict sets it as an attribute before the defaults are filled in), so a null do_* flag is
        off and a null value that a step needs is refused, as transformers refuses it. ValueError
        (one line, naming the key and what is supported) for another processor class or an option
        this module cannot honour."""
        name = _processor_name(config)
        merged = dict(_BASE_DEFAULTS, **_CLASS_DEFAULTS[name])
        for key, value in config.items():
            if key in merged:
                merged[key] = value
            elif key not in _IGNORED_KEYS:
                _refuse_key(name, key, value)
        return _spec_from_merged(name, merged)


def hf_preprocess(image_bgr: np.ndarray, spec: HFImageSpec) -> np.ndarray:
    """(H, W, 3) uint8 BGR (or (H, W) / (H, W, 1) grayscale, or (H, W, 4) BGRA) -> (3, S_h, S_w)
    float32 RGB, equal to the slow HF processor's ``pixel_values[0]`` for the same image as RGB."""
    pixels, bgr = _prepared(image_bgr, spec.convert_rgb)  # (H, W, 3) or (H, W) uint8
    target = _resize_target(pixels.shape[0], pixels.shape[1], spec)
    if target is not None and target != pixels.shape[:2]:  # Pillow returns an unchanged copy at equal size
        from PIL import Image  # here, not at import: a process running our own captioner never loads Pillow

        resized = Image.fromarray(pixels).resize((target[1], target[0]), resample=RESAMPLE_CODES[spec.resample])
        pixels = np.asarray(resized)
    if spec.crop is not None:
        pixels = _center_crop(pixels, *spec.crop)
    return _gather(pixels, bgr, _lookup_tables(spec.rescale_factor, spec.mean, spec.std))


# --------------------------------------------------------------------------- image steps
def _prepared(image: np.ndarray, convert_rgb: bool) -> tuple[np.ndarray, bool]:
    """The input as Pillow will take it: ((H, W, 3) uint8, True when in BGR order) or ((H, W), False)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise EdgeVLMError(f"expected a uint8 image array, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)) or 0 in image.shape:
        raise EdgeVLMError(f"expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.ndim == 2 or image.shape[2] == 3:
        return image, image.ndim == 3
    if not convert_rgb:
        return image[:, :, :3], True
    # BGRA: HF's convert_to_rgb on a PIL RGBA image, done with the same Pillow calls.
    from PIL import Image

    rgba = Image.fromarray(np.ascontiguousarray(image[:, :, [2, 1, 0, 3]]))
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")), False


def _resize_target(height: int, width: int, spec: HFImageSpec) -> tuple[int, int] | None:
    """(height, width) after the resize, or None when it does not resize."""
    if spec.resize == "exact":
        return spec.size
    if spec.resize == "shortest_edge":
        # transformers' get_resize_output_image_size (after torchvision): truncates the long edge.
        edge = spec.size[0]
        if width <= height:
            return int(edge * height / width), edge
        return edge, int(edge * width / height)
    return None


def _center_crop(pixels: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """transformers' center_crop on (H, W[, 3]) uint8: a view when the crop fits, else a zero-padded copy."""
    height, width = pixels.shape[:2]
    if crop_h <= height and crop_w <= width:
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return pixels[top:top + crop_h, left:left + crop_w]
    # Along each axis, a crop larger than the image puts the whole image ceil(excess / 2) in;
    # one that fits takes the slice starting at (size - crop) // 2, as above.
    canvas = np.zeros((crop_h, crop_w) + pixels.shape[2:], np.uint8)
    src, dst = [], []
    for size, crop in ((height, crop_h), (width, crop_w)):
        if crop <= size:
            start = (size - crop) // 2
            src.append(slice(start, start + crop))
            dst.append(slice(0, crop))
        else:
            pad = math.ceil((crop - size) / 2)
            src.append(slice(0, size))
            dst.append(slice(pad, pad + size))
    canvas[dst[0], dst[1]] = pixels[src[0], src[1]]
    return canvas


@lru_cache(maxsize=32)
def _lookup_tables(rescale_factor, mean, std) -> np.ndarray:
    """(3, 256) float32: channel c's output for each uint8 value, by transformers' exact dtypes."""
    values = np.arange(256, dtype=np.uint8)
    if rescale_factor is not None:
        # image_transforms.rescale: upcast to float64, multiply by the Python float, downcast to float32.
        scaled = (values.astype(np.float64) * rescale_factor).astype(np.float32)
    else:
        scaled = values.astype(np.float32)  # normalize's own cast of a uint8 image
    if mean is None:
        table = np.broadcast_to(scaled, (3, 256))
    else:
        # image_transforms.normalize: mean and std as float32 arrays, subtract then divide, in float32.
        table = (scaled[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    table = np.ascontiguousarray(table, dtype=np.float32)
    table.flags.writeable = False  # cached and shared between calls
    return table


def _gather(pixels: np.ndarray, bgr: bool, tables: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 -> (3, H, W) float32 RGB through the per-channel tables."""
    out = np.empty((3,) + pixels.shape[:2], np.float32)
    for channel in range(3):
        plane = pixels if pixels.ndim == 2 else pixels[:, :, 2 - channel if bgr else channel]
        np.take(tables[channel], plane, out=out[channel], mode="clip")  # "clip": no bounds pass; uint8 is in range
    return out


# --------------------------------------------------------------------------- config reading
def _processor_name(config: dict) -> str:
    """The transformers class name a config names, without "Pil"/"Fast" (one set of parameters, two backends)."""
    if not isinstance(config, dict):
        raise ValueError(f"preprocessor config: expected a JSON object, got {type(config).__name__}")
    if "auto_map" in config:
        raise ValueError(f"preprocessor config: auto_map (remote code) is not supported; supported: "
                         f"{', '.join(SUPPORTED_PROCESSORS)}")
    name = config.get("image_processor_type")
    if name is None and config.get("feature_extractor_type") is not None:
        # Configs saved before image processors existed (e.g. TrOCR's "ViTFeatureExtractor"), read as transformers does.
        name = str(config["feature_extractor_type"]).replace("FeatureExtractor", "ImageProcessor")
    for suffix in ("Pil", "Fast"):
        if isinstance(name, str) and name.endswith(suffix):
            name = name[: -len(suffix)]
    if name not in _CLASS_DEFAULTS:
        raise ValueError(f"unsupported image_processor_type {name!r}; supported: {', '.join(SUPPORTED_PROCESSORS)}")
    return name


def _refuse_key(name: str, key: str, value) -> None:
    """Accept a key that changes nothing at its value; raise for one we cannot honour."""
    if key in ("do_pad", "use_square_size") and not value:
        return
    if key == "data_format" and value in ("channels_first", None):
        return
    raise ValueError(f"{name}: {key}={value!r} is not supported; supported keys: "
                     f"{', '.join(sorted(_BASE_DEFAULTS))}")


def _spec_from_merged(name: str, merged: dict) -> HFImageSpec:
    """The spec from a full set of HF parameters (config over class defaults). A step that is on but
    lacks its value is refused, as transformers' validate_preprocess_arguments refuses it."""
    resize, size, resample = "none", (), None
    if _flag(name, merged, "do_resize"):
        resize, size = _parse_size(name, _needed(name, merged, "do_resize", "size"),
                                   _flag(name, merged, "default_to_square"))
        code, names = _needed(name, merged, "do_resize", "resample"), {v: k for k, v in RESAMPLE_CODES.items()}
        if isinstance(code, bool) or code not in names:
            raise ValueError(f"{name}: resample={code!r} is not supported; supported: Pillow codes "
                             f"{', '.join(f'{v} ({k})' for k, v in RESAMPLE_CODES.items())}")
        resample = names[code]
    crop = None
    if _flag(name, merged, "do_center_crop"):
        kind, crop = _parse_size(name, _needed(name, merged, "do_center_crop", "crop_size"), True, key="crop_size")
        if kind != "exact":
            raise ValueError(f"{name}: crop_size={merged['crop_size']!r} is not supported; supported: "
                             f"{{'height': H, 'width': W}}, [H, W] or an int")
    rescale = None
    if _flag(name, merged, "do_rescale"):
        rescale = _needed(name, merged, "do_rescale", "rescale_factor")
        if isinstance(rescale, bool) or not isinstance(rescale, (int, float)):
            raise ValueError(f"{name}: rescale_factor={rescale!r} is not a number")
    mean = std = None
    if _flag(name, merged, "do_normalize"):
        mean = _three(name, "image_mean", _needed(name, merged, "do_normalize", "image_mean"))
        std = _three(name, "image_std", _needed(name, merged, "do_normalize", "image_std"))
    return HFImageSpec(resize=resize, size=size, resample=resample, crop=crop, rescale_factor=rescale, mean=mean,
                       std=std, convert_rgb=_flag(name, merged, "do_convert_rgb"))


def _needed(name: str, merged: dict, flag: str, key: str):
    """merged[key], which the step ``flag`` turns on needs."""
    if merged[key] is None:
        raise ValueError(f"{name}: {flag} is true but {key} is null")
    return merged[key]


def _flag(name: str, merged: dict, key: str) -> bool:
    value = merged[key]
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{name}: {key}={value!r} must be true, false or null")
    return bool(value)


def _parse_size(name: str, size, default_to_square: bool, key: str = "size") -> tuple[str, tuple[int, ...]]:
    """transformers' get_size_dict: an int is square (or the shortest edge when not
    default_to_square), a pair is (height, width), a dict names its keys."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        size = {"height": size[0], "width": size[1]}
    if isinstance(size, dict):
        values = list(size.values())
        if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            if set(size) == {"height", "width"}:
                return "exact", (size["height"], size["width"])
            if set(size) == {"shortest_edge"}:
                return "shortest_edge", (size["shortest_edge"],)
    raise ValueError(f"{name}: {key}={size!r} is not supported; supported: {{'height': H, 'width': W}}, "
                     f"{{'shortest_edge': N}}, [H, W] or an int")


def _three(name: str, key: str, value) -> tuple[float, float, float]:
    """A mean/std as three floats; one number means the same for every channel, as in transformers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ValueError(f"{name}: {key}={value!r} must be 3 numbers (R, G, B) or one")
    return tuple(float(v) for v in value)


# --------------------------------------------------------------------------- spec checks
def _check_choice(field: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"HFImageSpec: {field}={value!r} is not one of {', '.join(choices)}")


def _check_ints(field: str, value, count: int) -> None:
    if (not isinstance(value, tuple) or len(value) != count
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)):
        raise ValueError(f"HFImageSpec: {field}={value!r} must be {count} positive integer(s)")


def _check_floats(field: str, value, count: int = 1) -> None:
    if (not isinstance(value, tuple) or len(value) != count
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)):
        raise ValueError(f"HFImageSpec: {field}={value!r} must be {count} finite number(s)")
