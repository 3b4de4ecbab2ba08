"""The engine manifest ``edgevlm.json``, typed: the only module that reads or writes it.

Every section the runtime acts on is a frozen dataclass; ``from_json`` refuses unknown
fields, missing fields and wrong types with a message naming the field, so an engine the
runtime would half-understand is never run. Provenance sections (``source``, ``exporter``,
``quantization``) are records for people and tools, kept as free-form dicts; of
``quantization`` the runtime reads two optional keys, checked here: ``target`` (the CPU a
``cpu`` INT8 engine was made for, runtime/cpu_isa.py) and ``variants`` (target -> a folder
inside this one holding the engine made for that CPU, runtime/cpu_variants.py).

Loading also confines every listed file to the engine folder (plain relative names, no
``..``, no absolute paths, no symlinks leaving it) and checks each file's sha256, so a
tampered, truncated or path-escaping engine is refused before onnxruntime sees it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import read_json, write_json
from edgevlm.runtime.file_records import file_matches
from edgevlm.runtime.hf_preprocess import RESAMPLE_CODES, HFImageSpec
from edgevlm.runtime.pixel_layout import FLOAT_NCHW, LAYOUTS, UINT8_S2D2, pixel_dtype_name
from edgevlm.runtime.hf_text import QUESTION_FORMATS
from edgevlm.runtime.manifest_schema import parse_section, section_json
from edgevlm.runtime.search import SearchSettings
from edgevlm.runtime.search_hf import HFGeneration

MANIFEST_FILE = "edgevlm.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` holds ints, or names for dynamic axes."""

    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphSpec:
    file: str  # key into Manifest.files
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def takes(self, name: str) -> bool:
        return any(spec.name == name for spec in self.inputs)

    def gives(self, name: str) -> bool:
        return any(spec.name == name for spec in self.outputs)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.outputs)


@dataclass(frozen=True)
class FileEntry:
    path: str  # a plain file name inside the engine folder
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ModelInfo:
    family: str  # dispatched on: runtime.families
    n_layers: int
    n_heads: int
    head_dim: int
    d_model: int
    vocab_size: int
    max_len: int
    cache_capacity: int  # self-attention cache slots per row
    num_visual_tokens: int
    pooled_dim: int
    vision_feature: str  # the encoder tap the model was trained on (a record: the graph has it built in)
    cache_layout: str = "fixed_capacity"


@dataclass(frozen=True)
class Preprocess:
    """Photo -> encoder input: (x * scale - mean) / std in ``color_order``, resized to S x S.

    ``layout`` (runtime/pixel_layout.py): "NCHW", the float tensor so normalised; or
    "uint8-s2d2", uint8 pixels looked up in ``pixel_table`` (the integer the graph's input
    quantization gives each value after that normalisation: scale, mean and std stay the
    model's), padded by one pixel of ``pad_value`` and cut into 2 x 2 blocks."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"
    resize_mode: str = "squash"
    interpolation: str = "area"
    layout: str = "NCHW"
    scale: float = 1 / 255
    pad_value: int | None = None  # uint8-s2d2's border pixel value (the input's zero point)
    # uint8-s2d2: (3, 256) per input colour, the value the graph takes for each raw pixel value
    pixel_table: tuple[tuple[int, ...], ...] | None = None


@dataclass(frozen=True)
class SpecialTokens:
    bos: int
    eos: int
    pad: int
    unk: int
    sep: int | None = None  # ends a VQA question; None: a captioning-only engine


@dataclass(frozen=True)
class Generation:
    beam_size: int
    max_new_tokens: int
    no_repeat_ngram: int
    length_penalty: float
    banned_ids: tuple[int, ...]
    no_repeat_word: bool = True

    def settings(self, beam_size: int | None = None, **overrides) -> SearchSettings:
        """The search settings these defaults give (``beam_size`` None: the engine's)."""
        values = dict(beam_size=beam_size or self.beam_size, max_new_tokens=self.max_new_tokens,
                      no_repeat_ngram=self.no_repeat_ngram, length_penalty=self.length_penalty,
                      banned_ids=tuple(self.banned_ids), no_repeat_word=self.no_repeat_word)
        values.update(overrides)
        return SearchSettings(**values)


@dataclass(frozen=True)
class TextSettings:
    """How a Hugging Face checkpoint's tokenizer decodes and takes questions (absent: our
    own word-level tokenizer)."""

    clean_up_spaces: bool = False  # transformers' clean_up_tokenization_spaces on decode
    question_format: str = "none"  # runtime.hf_text.QUESTION_FORMATS: how a question becomes a prompt
    cls_id: int | None = None  # the [CLS] a question prompt starts with


@dataclass(frozen=True)
class Concepts:
    """The concept head's categories and the words naming each, with the tuned thresholds."""

    names: tuple[str, ...]
    words: dict[str, tuple[str, ...]]
    ban_below: float  # a caption may not name a concept less probable than this
    abstain_below: float  # existence answers less probable than this: "I'm not sure"
    tuned_on: str | None = None
    tuned_questions: int | None = None
    # how eval --tune-abstention chose abstain_below (metrics.vqa_metrics.abstention_rule); "": as
    # train-concepts chose it (its report in the model folder, "abstain_rule", says how)
    rule: str = ""


@dataclass(frozen=True)
class Novelty:
    unfamiliar_above: float  # novelty above this: the caption is said as a guess (0: never)


@dataclass(frozen=True)
class CaptionMemorySettings:
    """Consensus re-ranking (runtime/caption_memory.py), written by ``edgevlm memory``: with
    a beam, the finished caption that agrees most with the human captions of the
    ``neighbours`` most similar memory photos is said."""

    file: str  # key in files
    images: int  # photos in the memory
    captions: int
    neighbours: int
    beam_size: int  # the default beam while the memory is used (generation.beam_size without it)
    logprob_weight: float  # x the candidate's length-normalised log-probability, added to its consensus
    dims: int  # embedding size after the whitened projection
    built_from: str  # the caption file's name


@dataclass(frozen=True)
class VQAThreshold:
    abstain_below: float  # decoder answers less probable than this: "I'm not sure"
    tuned_on: str
    tuned_questions: int
    rule: str = ""


@dataclass(frozen=True)
class PlanEntry:
    """A native TensorRT plan ``edgevlm build`` wrote for one graph. Not among ``files``: a
    plan is device-specific and optional, so it is checked by ``engine_cache.check_plan``
    (source sha256, TensorRT version, GPU, its own size and sha256) before it is deserialized,
    never by the engine's load."""

    path: str  # relative to the engine folder: "plans/<graph>.plan"
    precision: str  # what it was built as: fp32 | fp16 | int8
    onnx_sha256: str  # the ONNX graph it was built from
    trt_version: str
    gpu_name: str
    compute_capability: str
    plan_sha256: str
    plan_bytes: int
    axes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # axis -> (min, opt, max) of its profile


TASKS = ("caption", "vqa")
RESAMPLE_NAMES = tuple(RESAMPLE_CODES)
DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")  # numpy names of ONNX tensor types
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    files: dict[str, FileEntry]
    graphs: dict[str, GraphSpec]
    model: ModelInfo
    preprocess: Preprocess
    special_tokens: SpecialTokens
    generation: Generation
    precision: str
    tasks: tuple[str, ...] = ("caption",)
    concepts: Concepts | None = None
    novelty: Novelty | None = None
    caption_memory: CaptionMemorySettings | None = None
    source: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    vqa: VQAThreshold | None = None
    text: TextSettings | None = None
    # Hugging Face checkpoints: the slow image processor and generate()'s settings, followed exactly
    image_processor: HFImageSpec | None = None
    hf_generation: HFGeneration | None = None
    plans: dict[str, PlanEntry] | None = None  # native TensorRT plans (`edgevlm build`), by graph
    root: str = field(default="", compare=False)  # the engine folder; not written

    # --- reading ----------------------------------------------------------------------
    def path(self, file_key: str) -> str:
        """Absolute path of a listed file (``"tokenizer"``, or a graph's file key)."""
        return os.path.join(self.root, self.files[file_key].path)

    def graph(self, name: str) -> GraphSpec:
        return self.graphs[name]

    def plan_path(self, graph: str) -> str:
        """Absolute path of ``graph``'s native TensorRT plan, refused if it leads outside the
        engine folder (a symlink on the way); KeyError when none was built."""
        return _confined_path(self.root, self.plans[graph], f"plans.{graph}")

    def graph_path(self, name: str) -> str:
        return self.path(self.graphs[name].file)

    @property
    def cpu_target(self) -> str | None:
        """The CPU target this INT8 engine was made for; None for FP32, QDQ and older engines."""
        return (self.quantization or {}).get("target")

    @property
    def cpu_variants(self) -> dict[str, str]:
        """target -> folder (relative to this one) of the engine made for that CPU."""
        return dict((self.quantization or {}).get("variants") or {})

    @property
    def tokens(self) -> SpecialTokens:
        return self.special_tokens

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.files.values())

    def replace(self, **changes) -> "Manifest":
        return dataclasses.replace(self, **changes)

    # --- JSON -------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any, root: str = "", where: str = MANIFEST_FILE) -> "Manifest":
        """A parsed ``edgevlm.json`` -> Manifest; EdgeVLMError naming the first bad field."""
        if not isinstance(data, dict):
            raise EdgeVLMError(f"{where}: expected a JSON object, got {type(data).__name__}; re-export the engine")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise EdgeVLMError(
                f"{where}: unknown schema_version {version!r}; this edgevlm reads version {SCHEMA_VERSION} "
                "(re-export the engine with this version, or upgrade edgevlm)"
            )
        manifest = parse_section(cls, data, where, skip=("root",))
        manifest = dataclasses.replace(manifest, root=root)
        _check_consistent(manifest, where)
        return manifest

    def to_json(self) -> dict:
        return section_json(self, skip=("root",))

    def save(self, engine_dir: str) -> None:
        """Write ENGINE_DIR/edgevlm.json atomically (it is not among the hashed files)."""
        write_json(os.path.join(engine_dir, MANIFEST_FILE), self.to_json())


def _check_consistent(manifest: Manifest, where: str) -> None:
    """Cross-field rules and values the runtime can honour; anything else is refused here."""
    def refuse(field_name: str, problem: str) -> None:
        raise EdgeVLMError(f"{where}: {field_name} {problem}; re-export the engine with this edgevlm")

    for key, entry in manifest.files.items():
        name = entry.path
        if not name or os.path.isabs(name) or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            refuse(f"files.{key}.path", f"is {name!r}: engine files must be plain relative names inside the engine folder")
    for name, graph in manifest.graphs.items():
        if graph.file not in manifest.files:
            refuse(f"graphs.{name}.file", f"names {graph.file!r}, which is not in files")
        for kind, specs in (("inputs", graph.inputs), ("outputs", graph.outputs)):
            for spec in specs:
                if spec.dtype not in DTYPES:
                    refuse(f"graphs.{name}.{kind}.{spec.name}.dtype", f"is {spec.dtype!r}, not one of {list(DTYPES)}")
                if any(isinstance(d, int) and d < 0 or isinstance(d, str) and not d.isidentifier() for d in spec.shape):
                    refuse(f"graphs.{name}.{kind}.{spec.name}.shape", f"is {list(spec.shape)}: dims are sizes >= 0 "
                           "or axis names")
    for graph, plan in (manifest.plans or {}).items():
        if graph not in manifest.graphs:
            refuse(f"plans.{graph}", "names a graph the engine does not have")
        name = plan.path
        if not name or os.path.isabs(name) or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            refuse(f"plans.{graph}.path", f"is {name!r}: plans must be plain relative names inside the engine folder")
        if plan.precision not in PRECISIONS:
            refuse(f"plans.{graph}.precision", f"is {plan.precision!r}, not one of {list(PRECISIONS)}")
    _check_cpu_targets(manifest.quantization or {}, refuse)
    unknown = [t for t in manifest.tasks if t not in TASKS]
    if unknown:
        refuse("tasks", f"lists {unknown}, which this runtime cannot do (it knows {list(TASKS)})")
    if manifest.precision not in PRECISIONS:
        refuse("precision", f"is {manifest.precision!r}, not one of {list(PRECISIONS)}")
    p = manifest.preprocess
    supported = {"color_order": ("RGB", "BGR"), "resize_mode": ("squash",), "interpolation": ("area", "linear"),
                 "layout": LAYOUTS}
    if manifest.image_processor is None and (p.resize_mode == "shortest_edge" or p.interpolation in RESAMPLE_NAMES):
        refuse("image_processor", f"is missing, but preprocess names {p.resize_mode!r}/{p.interpolation!r} processing: "
               "a Hugging Face engine needs its image_processor section")
    if manifest.image_processor is not None:  # a record of the HF processing, which the runtime follows
        supported |= {"resize_mode": ("squash", "shortest_edge", "none"), "interpolation": ("none",) + RESAMPLE_NAMES,
                      "layout": (FLOAT_NCHW,)}
    for name, allowed in supported.items():
        if getattr(p, name) not in allowed:
            refuse(f"preprocess.{name}", f"is {getattr(p, name)!r}; this runtime supports {list(allowed)}")
    if not (p.scale > 0 and p.image_size > 0 and all(s > 0 for s in p.std)):
        refuse("preprocess", "needs image_size > 0, scale > 0 and std > 0")
    if p.layout == UINT8_S2D2:
        if p.image_size % 2:
            refuse("preprocess.image_size", f"is {p.image_size}; layout {UINT8_S2D2} cuts 2 x 2 blocks: it must be even")
        if p.pad_value is None or not 0 <= p.pad_value <= 255:
            refuse("preprocess.pad_value", f"is {p.pad_value!r}; layout {UINT8_S2D2} needs a border value in 0..255")
        table = p.pixel_table
        if table is None or len(table) != 3 or any(len(row) != 256 or not all(0 <= v <= 255 for v in row)
                                                   for row in table):
            refuse("preprocess.pixel_table", f"must be 3 rows of 256 values in 0..255 with layout {UINT8_S2D2}")
    elif p.pad_value is not None or p.pixel_table is not None:
        refuse("preprocess", f"pad_value and pixel_table go with layout {UINT8_S2D2}, not {p.layout!r}")
    vision = manifest.graphs.get("vision")
    pixels = [spec for spec in (vision.inputs if vision else ()) if spec.name == "pixels"]
    if pixels and pixels[0].dtype != pixel_dtype_name(p.layout):
        refuse("graphs.vision.inputs.pixels.dtype", f"is {pixels[0].dtype!r}, but layout {p.layout!r} gives "
               f"{pixel_dtype_name(p.layout)}")
    if manifest.model.cache_layout != "fixed_capacity":
        refuse("model.cache_layout", f"is {manifest.model.cache_layout!r}; this runtime reads 'fixed_capacity'")
    if manifest.generation.beam_size < 1 or manifest.generation.max_new_tokens < 1:
        refuse("generation", "needs beam_size >= 1 and max_new_tokens >= 1")
    if manifest.text is not None and manifest.text.question_format not in QUESTION_FORMATS:
        refuse("text.question_format", f"is {manifest.text.question_format!r}, not one of {list(QUESTION_FORMATS)}")
    memory = manifest.caption_memory
    if memory is not None:
        if memory.file not in manifest.files:
            refuse("caption_memory.file", f"names {memory.file!r}, which is not in files")
        if memory.neighbours < 1 or memory.images < 1 or memory.beam_size < 2:
            refuse("caption_memory", "needs neighbours >= 1, images >= 1 and beam_size >= 2")
    if manifest.concepts is not None:
        missing = [n for n in manifest.concepts.names if n not in manifest.concepts.words]
        if missing:
            refuse("concepts.words", f"has no words for {missing}")


def _check_cpu_targets(quantization: dict, refuse) -> None:
    """``quantization.target`` and ``quantization.variants``: both optional (engines made before
    them load as before), both acted on by the runtime, so only known targets and plain
    relative folders pass."""
    from edgevlm.runtime.cpu_isa import TARGETS

    if "target" in quantization and quantization["target"] not in TARGETS:
        refuse("quantization.target", f"is {quantization['target']!r}, not one of {list(TARGETS)} (upgrade edgevlm?)")
    variants = quantization.get("variants", {})
    if not isinstance(variants, dict):
        refuse("quantization.variants", f"is {type(variants).__name__}, expected an object of target: folder")
    for target, folder in variants.items():
        if target not in TARGETS:
            refuse(f"quantization.variants.{target}", f"names an unknown target; known: {list(TARGETS)}")
        if (not isinstance(folder, str) or not folder or os.path.isabs(folder) or "\\" in folder
                or any(part in ("", ".", "..") for part in folder.split("/"))):
            refuse(f"quantization.variants.{target}", f"is {folder!r}: variants are plain relative folders inside "
                   "the engine folder")


def _confined_path(root: str, entry: FileEntry | PlanEntry, key: str) -> str:
    """ROOT/entry.path, refused if it (or a symlink on the way) leads outside ROOT."""
    path = os.path.join(root, entry.path)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        where = key if key.startswith("plans.") else f"files.{key}"
        raise EdgeVLMError(f"engine file {entry.path!r} ({where} in {MANIFEST_FILE}) leads outside the engine "
                           f"folder {root}; refusing to open it (re-export the engine)")
    return path


def is_engine_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MANIFEST_FILE))


def load_manifest(engine_dir: str, verify: bool = True, use_records: bool = True) -> Manifest:
    """Read ENGINE_DIR/edgevlm.json; with ``verify`` check every file's sha256 (files unchanged
    since they last matched by their record, ``use_records``: runtime/file_records.py)."""
    path = os.path.join(engine_dir, MANIFEST_FILE)
    if not os.path.isdir(engine_dir):
        raise EdgeVLMError(f"engine folder not found: {engine_dir}; make one with `edgevlm export MODEL_DIR --out DIR`")
    if not os.path.isfile(path):
        raise EdgeVLMError(f"{engine_dir} is not an engine: {MANIFEST_FILE} is missing (re-run `edgevlm export`)")
    root = os.path.abspath(engine_dir)
    manifest = Manifest.from_json(read_json(path, "an edgevlm engine manifest"), root, path)
    for key, entry in manifest.files.items():
        file_path = _confined_path(root, entry, key)
        if verify:
            _verify_file(file_path, entry, use_records)
    return manifest


def verify_files(manifest: Manifest, use_records: bool = True) -> Manifest:
    """Check every file of a manifest loaded with ``verify=False`` as ``load_manifest`` would
    have (present, sha256 as listed), without reading the manifest again."""
    for key, entry in manifest.files.items():
        _verify_file(_confined_path(manifest.root, entry, key), entry, use_records)
    return manifest


def _verify_file(file_path: str, entry: FileEntry, use_records: bool = True) -> None:
    if not os.path.isfile(file_path):
        raise EdgeVLMError(f"engine file missing: {file_path} (listed in {MANIFEST_FILE}); re-export the engine")
    if not file_matches(file_path, entry.sha256, use_records):
        raise EdgeVLMError(
            f"engine file {file_path} does not match the sha256 in {MANIFEST_FILE}: "
            "it was modified or truncated; re-export the engine"
        )


def update_manifest(engine_dir: str, change, what: str = "the manifest") -> Manifest:
    """Load (unverified), apply ``change(manifest) -> manifest`` and save atomically; an
    unwritable engine folder is one line naming the fix."""
    manifest = change(load_manifest(engine_dir, verify=False))
    try:
        manifest.save(engine_dir)
    except OSError as exc:
        raise EdgeVLMError(f"cannot write {what} into {os.path.join(engine_dir, MANIFEST_FILE)}: {exc.strerror}; "
                           "copy the engine somewhere writable and pass --engine") from exc
    return manifest


def engine_file_names(manifest: Manifest) -> list[str]:
    """What makes up the engine at ``manifest.root``: the files its manifest lists, then the
    manifest itself (copy them in this order and the copy is an engine only once whole)."""
    return [entry.path for entry in manifest.files.values()] + [MANIFEST_FILE]


def check_engine_out(out_dir: str, inputs: tuple[str, ...] = ()) -> None:
    """Refuse to write an engine over a folder that is not one (see fileio.check_replaceable)."""
    from edgevlm.fileio import check_replaceable

    check_replaceable(out_dir, MANIFEST_FILE, "an edgevlm engine", inputs=inputs)
