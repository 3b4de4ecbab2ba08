"""runtime/hf_preprocess.py against transformers' own slow (PIL-backend) image processors.

Parity is exact: every comparison is ``np.array_equal`` on float32 (max |ours - theirs| = 0),
for ViT, DeiT, BEiT, BLIP and CLIP (GIT), each built here with explicit arguments; the spec is
read back from the JSON that ``save_pretrained`` writes, so the config reader is tested by the
same comparisons. Transformers is given the image as RGB (a PIL image unless a test says numpy);
we are given the same image as OpenCV's BGR.
"""

import json

import numpy as np
import pytest
from PIL import Image
from transformers import (
    BeitImageProcessorPil,
    BlipImageProcessorPil,
    CLIPImageProcessorPil,
    DeiTImageProcessorPil,
    ViTImageProcessorPil,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.hf_preprocess import SUPPORTED_PROCESSORS, HFImageSpec, hf_preprocess
from edgevlm.runtime.preprocess import read_image_bgr
from tests.support import SAMPLE_PHOTOS

NEAREST, LANCZOS, BILINEAR, BICUBIC = 0, 1, 2, 3
CLIP = {"image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD}

# What our families' checkpoints use, written out (no hub access), plus settings that reach the
# other branches: no rescale, no normalize, other filters, a crop bigger than the resized image.
PROCESSORS = {
    "trocr_vit_384": lambda: ViTImageProcessorPil(size={"height": 384, "width": 384}, resample=BILINEAR,
                                                  image_mean=[0.5] * 3, image_std=[0.5] * 3),
    "vit_defaults": lambda: ViTImageProcessorPil(),
    "deit_base": lambda: DeiTImageProcessorPil(size={"height": 256, "width": 256},
                                               crop_size={"height": 224, "width": 224}, resample=BICUBIC,
                                               image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD),
    "beit_base": lambda: BeitImageProcessorPil(size=224, resample=BILINEAR, do_center_crop=False),
    "blip_384": lambda: BlipImageProcessorPil(size={"height": 384, "width": 384}, resample=BICUBIC,
                                              do_convert_rgb=True, **CLIP),
    "git_clip_224": lambda: CLIPImageProcessorPil(size={"shortest_edge": 224},
                                                  crop_size={"height": 224, "width": 224}, resample=BICUBIC,
                                                  do_center_crop=True, do_convert_rgb=True, **CLIP),
    "clip_crop_pads": lambda: CLIPImageProcessorPil(size={"shortest_edge": 100},
                                                    crop_size={"height": 123, "width": 91}),
    "vit_nearest_no_rescale": lambda: ViTImageProcessorPil(size={"height": 97, "width": 131}, resample=NEAREST,
                                                           do_rescale=False),
    "clip_lanczos_no_normalize": lambda: CLIPImageProcessorPil(size={"shortest_edge": 160}, resample=LANCZOS,
                                                               crop_size={"height": 150, "width": 120},
                                                               do_normalize=False),
}


def _rgb_images() -> dict:
    """(H, W, 3) uint8 RGB test images; no height of 1, 3 or 4 (transformers would read it as channels)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    gradient = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.uint8)
    portrait = (rng.integers(0, 60, (300, 170, 3)) + np.linspace(0, 190, 300)[:, None, None]).astype(np.uint8)
    return {
        "noise_landscape": rng.integers(0, 256, (120, 200, 3), dtype=np.uint8),
        "gradient": gradient,
        "portrait": portrait,
        "small_upsampled": rng.integers(0, 256, (31, 47, 3), dtype=np.uint8),
        "photo": np.ascontiguousarray(read_image_bgr(SAMPLE_PHOTOS[0])[:, :, ::-1]),  # 512 x 512 JPEG
    }


IMAGES = _rgb_images()


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _theirs(processor, image) -> np.ndarray:
    return processor(image, return_tensors="np")["pixel_values"][0]


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict:
    """Each processor's spec, read from the preprocessor_config.json its save_pretrained wrote."""
    out = {}
    for name, make in PROCESSORS.items():
        folder = tmp_path_factory.mktemp(name)
        make().save_pretrained(str(folder))
        with open(folder / "preprocessor_config.json") as f:
            out[name] = HFImageSpec.from_preprocessor_config(json.load(f))
    return out


# --------------------------------------------------------------------------- exact parity
@pytest.mark.parametrize("image_name", IMAGES)
@pytest.mark.parametrize("processor_name", PROCESSORS)
def test_matches_the_slow_processor_exactly(processor_name, image_name, specs):
    processor, rgb = PROCESSORS[processor_name](), IMAGES[image_name]
    theirs = _theirs(processor, Image.fromarray(rgb))
    ours = hf_preprocess(_bgr(rgb), specs[processor_name])
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs), f"max |diff| {np.abs(ours - theirs).max()}"


def test_numpy_input_to_transformers_gives_the_same(specs):
    rgb = IMAGES["noise_landscape"]
    for name in ("blip_384", "git_clip_224", "deit_base"):
        assert np.array_equal(hf_preprocess(_bgr(rgb), specs[name]), _theirs(PROCESSORS[name](), rgb))


def test_shapes_follow_resize_and_crop(specs):
    portrait = _bgr(IMAGES["portrait"])  # 300 x 170
    assert hf_preprocess(portrait, specs["blip_384"]).shape == (3, 384, 384)
    assert hf_preprocess(portrait, specs["clip_crop_pads"]).shape == (3, 123, 91)
    assert hf_preprocess(portrait, specs["vit_nearest_no_rescale"]).shape == (3, 97, 131)


def test_the_input_is_not_modified(specs):
    bgr = _bgr(IMAGES["gradient"])
    before = bgr.copy()
    hf_preprocess(bgr, specs["git_clip_224"])
    assert np.array_equal(bgr, before)


@pytest.mark.parametrize("processor_name", PROCESSORS)
def test_grayscale_matches(processor_name, specs):
    """A gray image: transformers converts a PIL "L" image to RGB when do_convert_rgb; without it
    it refuses one channel, so the caller converts first, which is what we match."""
    processor = PROCESSORS[processor_name]()
    gray = np.random.default_rng(1).integers(0, 256, (90, 130), dtype=np.uint8)
    image = Image.fromarray(gray) if processor.do_convert_rgb else Image.fromarray(gray).convert("RGB")
    theirs = _theirs(processor, image)
    assert np.array_equal(hf_preprocess(gray, specs[processor_name]), theirs)
    assert np.array_equal(hf_preprocess(gray[:, :, None], specs[processor_name]), theirs)


@pytest.mark.parametrize("processor_name", ["blip_384", "git_clip_224", "trocr_vit_384"])
def test_bgra_matches(processor_name, specs):
    """With do_convert_rgb, alpha is composited onto white as transformers does to a PIL RGBA image;
    without it, alpha is dropped, as the caller's .convert("RGB") does."""
    processor = PROCESSORS[processor_name]()
    rgba = np.random.default_rng(2).integers(0, 256, (90, 130, 4), dtype=np.uint8)
    image = Image.fromarray(rgba) if processor.do_convert_rgb else Image.fromarray(rgba).convert("RGB")
    bgra = np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
    assert np.array_equal(hf_preprocess(bgra, specs[processor_name]), _theirs(processor, image))


@pytest.mark.parametrize("name", SUPPORTED_PROCESSORS)
def test_a_config_naming_only_the_class_gets_its_defaults(name):
    processor = {"ViTImageProcessor": ViTImageProcessorPil, "DeiTImageProcessor": DeiTImageProcessorPil,
                 "BeitImageProcessor": BeitImageProcessorPil, "BlipImageProcessor": BlipImageProcessorPil,
                 "CLIPImageProcessor": CLIPImageProcessorPil}[name]()
    spec = HFImageSpec.from_preprocessor_config({"image_processor_type": name})
    rgb = IMAGES["noise_landscape"]
    assert np.array_equal(hf_preprocess(_bgr(rgb), spec), _theirs(processor, Image.fromarray(rgb)))
    # The backend suffixes name the same parameters.
    assert HFImageSpec.from_preprocessor_config({"image_processor_type": name + "Fast"}) == spec
    assert HFImageSpec.from_preprocessor_config({"image_processor_type": name + "Pil"}) == spec


LEGACY_CONFIGS = [
    # TrOCR's, from before image processors: feature_extractor_type, an int size (square here).
    (ViTImageProcessorPil, {"do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
                            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                            "processor_class": "TrOCRProcessor", "resample": 2, "size": 384}),
    # CLIP's: int size = shortest edge (CLIP's default_to_square is false), int crop_size = square.
    (CLIPImageProcessorPil, {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                             "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": list(OPENAI_CLIP_MEAN),
                             "image_std": list(OPENAI_CLIP_STD), "resample": 3, "size": 224}),
    # An explicit null is None, not the class default: no center crop, and an int size with a null
    # default_to_square is a shortest edge; one number is every channel's mean/std.
    (CLIPImageProcessorPil, {"image_processor_type": "CLIPImageProcessor", "do_center_crop": None,
                             "default_to_square": None, "size": 200, "image_mean": 0.5, "image_std": 0.5}),
    # BEiT segmentation: reducing labels touches labels only; a [height, width] size.
    (BeitImageProcessorPil, {"image_processor_type": "BeitImageProcessor", "do_reduce_labels": True,
                             "size": [200, 240]}),
]


@pytest.mark.parametrize("cls,config", LEGACY_CONFIGS, ids=["trocr_vit", "clip_int_sizes", "clip_nulls", "beit_labels"])
def test_older_config_forms_read_as_transformers_reads_them(cls, config):
    rgb = IMAGES["portrait"]
    theirs = _theirs(cls.from_dict(config), Image.fromarray(rgb))
    assert np.array_equal(hf_preprocess(_bgr(rgb), HFImageSpec.from_preprocessor_config(config)), theirs)


def test_spec_reads_as_expected(specs):
    assert specs["git_clip_224"] == HFImageSpec(
        resize="shortest_edge", size=(224,), resample="bicubic", crop=(224, 224), rescale_factor=1 / 255,
        mean=tuple(OPENAI_CLIP_MEAN), std=tuple(OPENAI_CLIP_STD), convert_rgb=True)
    assert specs["trocr_vit_384"].resize == "exact" and specs["trocr_vit_384"].size == (384, 384)
    assert specs["trocr_vit_384"].convert_rgb is False  # ViT's do_convert_rgb is unset
    assert specs["vit_nearest_no_rescale"].rescale_factor is None
    assert specs["clip_lanczos_no_normalize"].mean is None
    no_resize = HFImageSpec.from_preprocessor_config({"image_processor_type": "BlipImageProcessor", "do_resize": False})
    assert (no_resize.resize, no_resize.size, no_resize.resample) == ("none", (), None)
    assert hf_preprocess(_bgr(IMAGES["portrait"]), no_resize).shape == (3, 300, 170)


# --------------------------------------------------------------------------- refusals
def _refusal(config: dict) -> str:
    with pytest.raises(ValueError) as caught:
        HFImageSpec.from_preprocessor_config(config)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_unsupported_processor_is_refused_naming_the_supported_ones():
    supported = ", ".join(SUPPORTED_PROCESSORS)
    assert _refusal({"image_processor_type": "SiglipImageProcessor"}) == (
        f"unsupported image_processor_type 'SiglipImageProcessor'; supported: {supported}")
    assert _refusal({"size": 224}) == f"unsupported image_processor_type None; supported: {supported}"
    assert _refusal({"feature_extractor_type": "DetrFeatureExtractor"}).startswith(
        "unsupported image_processor_type 'DetrImageProcessor'; supported: BeitImageProcessor")
    assert "auto_map (remote code)" in _refusal({"image_processor_type": "CLIPImageProcessor",
                                                 "auto_map": {"AutoImageProcessor": "x.Y"}})


@pytest.mark.parametrize("key,value,fragment", [
    ("do_pad", True, "do_pad=True is not supported"),
    ("use_square_size", True, "use_square_size=True is not supported"),
    ("crop_pct", 0.875, "crop_pct=0.875 is not supported; supported keys: crop_size, default_to_square"),
    ("data_format", "channels_last", "data_format='channels_last' is not supported"),
    ("size", {"longest_edge": 224}, "size={'longest_edge': 224} is not supported; supported: {'height': H"),
    ("size", {"shortest_edge": 224, "longest_edge": 400}, "size={'shortest_edge': 224, 'longest_edge': 400}"),
    ("size", {"max_height": 224, "max_width": 224}, "size={'max_height': 224, 'max_width': 224} is not supported"),
    ("crop_size", {"shortest_edge": 224}, "crop_size={'shortest_edge': 224} is not supported"),
    ("resample", 6, "resample=6 is not supported; supported: Pillow codes 0 (nearest), 1 (lanczos)"),
    ("image_mean", [0.5, 0.5], "image_mean=[0.5, 0.5] must be 3 numbers (R, G, B) or one"),
    ("do_resize", "yes", "do_resize='yes' must be true, false or null"),
])
def test_options_we_cannot_honour_are_refused_naming_them(key, value, fragment):
    message = _refusal({"image_processor_type": "CLIPImageProcessor", key: value})
    assert message.startswith("CLIPImageProcessor: ") and fragment in message


def test_harmless_values_of_unsupported_options_are_accepted():
    base = HFImageSpec.from_preprocessor_config({"image_processor_type": "CLIPImageProcessor"})
    same = {"do_pad": False, "pad_size": None, "use_square_size": False, "data_format": "channels_first",
            "processor_class": "GitProcessor", "image_seq_length": 197}
    assert HFImageSpec.from_preprocessor_config({"image_processor_type": "CLIPImageProcessor", **same}) == base


@pytest.mark.parametrize("cls,config,message", [
    (ViTImageProcessorPil, {"do_center_crop": True}, "do_center_crop is true but crop_size is null"),
    (CLIPImageProcessorPil, {"resample": None}, "do_resize is true but resample is null"),
    (CLIPImageProcessorPil, {"image_mean": None}, "do_normalize is true but image_mean is null"),
    (BlipImageProcessorPil, {"rescale_factor": None}, "do_rescale is true but rescale_factor is null"),
])
def test_a_step_without_its_value_is_refused_as_transformers_refuses_it(cls, config, message):
    name = cls.__name__[:-3]
    assert _refusal({"image_processor_type": name, **config}) == f"{name}: {message}"
    with pytest.raises(ValueError):
        _theirs(cls.from_dict(config), Image.fromarray(IMAGES["small_upsampled"]))


# --------------------------------------------------------------------------- JSON round trip
def test_json_round_trip(specs):
    for spec in specs.values():
        assert HFImageSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert specs["git_clip_224"].to_json()["size"] == [224]


@pytest.mark.parametrize("change,fragment", [
    ({"colour": "rgb"}, "unknown field(s) colour"),
    ({"crop": "DELETE"}, "missing field(s) crop"),
    ({"size": 224}, "size must be a list"),
    ({"size": [224, 224]}, "size=(224, 224) must be 1 positive integer(s)"),
    ({"resize": "squash"}, "resize='squash' is not one of none, exact, shortest_edge"),
    ({"resample": 3}, "resample must be a string"),
    ({"crop": [224, 0]}, "crop=(224, 0) must be 2 positive integer(s)"),
    ({"mean": None}, "mean and std must both be given or both be None"),
    ({"std": [0.5, 0.0, 0.5]}, "std (0.5, 0.0, 0.5) has a zero"),
    ({"rescale_factor": "1/255"}, "rescale_factor=('1/255',) must be 1 finite number(s)"),
    ({"convert_rgb": 1}, "convert_rgb must be a bool"),
])
def test_from_json_is_strict(change, fragment, specs):
    data = specs["git_clip_224"].to_json()
    data.update({k: v for k, v in change.items() if v != "DELETE"})
    for key in [k for k, v in change.items() if v == "DELETE"]:
        del data[key]
    with pytest.raises(ValueError) as caught:
        HFImageSpec.from_json(data)
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------- bad images
@pytest.mark.parametrize("image,fragment", [
    (np.zeros((10, 10, 3), np.float32), "expected a uint8 image array, got float32"),
    (np.zeros((10, 10, 2), np.uint8), "got shape (10, 10, 2)"),
    (np.zeros((0, 10, 3), np.uint8), "got shape (0, 10, 3)"),
    (np.zeros((2, 10, 10, 3), np.uint8), "got shape (2, 10, 10, 3)"),
])
def test_bad_images_are_refused(image, fragment, specs):
    with pytest.raises(EdgeVLMError) as caught:
        hf_preprocess(image, specs["blip_384"])
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------- the fast processors
def test_the_fast_processors_differ_by_up_to_three_uint8_steps():
    """Documents, does not match: transformers 5's default (torchvision) processors resize with
    torchvision's antialiased uint8 resize and fuse rescale with normalize, so they are near the
    slow ones, never equal. Measured with torchvision 0.28 on the images here: 1-3 uint8 steps
    where the resizes disagree (3: BEiT, bicubic 224, on the portrait; BLIP/CLIP up to 2; mean
    |diff| <= 0.002), and up to 2.4e-7 where they agree (the gradient, the photo): the fused
    (x - 255 * mean) / (255 * std) rounds differently from (x / 255 - mean) / std."""
    pytest.importorskip("torchvision", reason="the fast processors need torchvision, not installed here")
    from transformers import (BeitImageProcessor, BlipImageProcessor, CLIPImageProcessor, DeiTImageProcessor,
                              ViTImageProcessor)

    for fast, slow in [(ViTImageProcessor, ViTImageProcessorPil), (DeiTImageProcessor, DeiTImageProcessorPil),
                       (BeitImageProcessor, BeitImageProcessorPil), (BlipImageProcessor, BlipImageProcessorPil),
                       (CLIPImageProcessor, CLIPImageProcessorPil)]:
        step = 1 / 255 / min(slow().image_std)  # one uint8 step after normalizing
        diffs = [np.abs(_theirs(fast(), Image.fromarray(rgb)) - _theirs(slow(), Image.fromarray(rgb))).max()
                 for rgb in IMAGES.values()]
        assert min(diffs) > 0, f"{slow.__name__}: fast now equals slow on an image"
        assert max(diffs) <= 3 * step + 1e-5, f"{slow.__name__}: {max(diffs) / step:.2f} uint8 steps"
