"""``edgevlm memory ENGINE --data CAPTIONS.json``: put a caption memory into an engine folder.

The engine's own vision graph embeds every captioned photo (so an INT8 engine's keys are
INT8 embeddings, as its queries will be); a whitened PCA shrinks them to ``dims`` (the
training photos' embeddings, 6,091 x 1280 floats, are 31 MB; 128 dims keep the neighbours
and cost 1.6 MB); the captions are stored as words. Torch-free: it runs where the runtime
runs, on any engine whose vision graph gives a pooled embedding.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from edgevlm.calibration.int8_emulation import emulation_needed, engine_as_made
from edgevlm.data.coco import load_coco_captions
from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import atomic_path, check_writable
from edgevlm.runtime.caption_memory import CaptionMemory, caption_words
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.manifest import CaptionMemorySettings, FileEntry, Manifest, load_manifest, update_manifest
from edgevlm.runtime.preprocess import read_image_bgr

log = logging.getLogger(__name__)

FILE_KEY = "caption_memory"
DEFAULTS = {"neighbours": 30, "beam_size": 16, "logprob_weight": 0.07, "dims": 128}  # tuned on dev: MODEL_CARD.md


def whitened_projection(embeddings: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """embeddings (M, C) -> mean (C,), projection (C, D) onto the top D principal axes, each
    divided by its singular value (so no single direction, e.g. brightness, decides the
    neighbours). Only axes the photos actually span are kept (D <= rank <= M - 1): an empty
    axis scaled up would make a new photo's key noise."""
    mean = embeddings.mean(axis=0)
    _, singular, axes = np.linalg.svd(embeddings - mean, full_matrices=False)  # axes (min(M,C), C)
    spanned = int(np.sum(singular > 1e-4 * max(singular[0], 1e-12)))
    dims = max(1, min(dims, spanned))
    return mean.astype(np.float32), (axes[:dims].T / np.maximum(singular[:dims], 1e-12)).astype(np.float32)


def check_memory_target(manifest: Manifest, engine_dir: str) -> None:
    """Refuse, in one line, an engine a caption memory cannot serve (from its manifest alone,
    before any photo is read or session made)."""
    family = manifest.model.family
    if manifest.cpu_variants:
        raise EdgeVLMError(f"{engine_dir} lists engines for other CPUs (quantization.variants), which would not get "
                           "the memory; run edgevlm memory on each variant's folder")
    if manifest.hf_generation is not None:
        raise EdgeVLMError(f"the engine {engine_dir} is a Hugging Face {family} model, which searches exactly as "
                           "transformers' generate() does; a caption memory re-ranks edgevlm's own beam search (use it "
                           "with edgevlm's engines)")
    if not manifest.graph("vision").gives("pooled"):
        raise EdgeVLMError(f"the engine {engine_dir} gives no pooled embedding (a {family} model), so photos cannot be "
                           "compared; caption memories work with edgevlm's own engines")
    if "caption" not in manifest.tasks:
        raise EdgeVLMError(f"the engine {engine_dir} does not caption; a caption memory re-ranks captions")


def embed_photos(engine: CaptionEngine, paths: list[str], say=lambda line: None, batch_size: int = 16) -> np.ndarray:
    """Image files -> the vision graph's pooled embeddings (M, C) float32; ``say`` hears the
    progress every 1,000 photos (tqdm is not in the torch-free install this runs in)."""
    out, report_at = [], 1000
    for start in range(0, len(paths), batch_size):
        if start >= report_at:
            say(f"embedded {start} of {len(paths)} photos")
            report_at += 1000
        batch = paths[start : start + batch_size]
        pixels = np.stack([engine.preprocess(read_image_bgr(path)) for path in batch])
        out.append(engine.see(pixels).pooled.astype(np.float32))
    return np.concatenate(out)


def build_caption_memory(engine_dir: str, captions_path: str, images_dir: str | None = None, *,
                         neighbours: int = DEFAULTS["neighbours"], beam_size: int = DEFAULTS["beam_size"],
                         logprob_weight: float = DEFAULTS["logprob_weight"], dims: int = DEFAULTS["dims"],
                         threads: int | None = None, say=lambda line: None) -> Manifest:
    """Embed the captioned photos with ENGINE_DIR's vision graph and record the memory (and
    ``beam_size``, the default beam while it is used) in its manifest. The memory file's name
    carries its hash, so the manifest always lists a complete file: the new one is written,
    then the manifest, then the old file is removed."""
    if neighbours < 1 or not 2 <= beam_size <= 16 or dims < 1:
        raise EdgeVLMError("--neighbours and --dims must be >= 1 and --beam 2..16 (re-ranking needs candidates)")
    manifest = load_manifest(engine_dir, verify=False)
    check_memory_target(manifest, engine_dir)
    check_writable(engine_dir, inside=True, flag="ENGINE_DIR")  # before minutes of embedding, not after
    items = [item for item in load_coco_captions(captions_path, images_dir) if item.captions]
    if len(items) < 2:
        raise EdgeVLMError(f"{captions_path} has {len(items)} captioned images; a caption memory needs at least 2")
    # Embedded natively, the VNNI variant's memory built on an AVX2 CPU (whose u8 x s8 sums
    # saturate) lowered its captions' BLEU-4 0.2217 -> 0.2196 and raised CHAIR-i 0.061 -> 0.067
    # (stop 33): the neighbours a VNNI CPU finds at run time were not the ones stored.
    emulate = emulation_needed(manifest.cpu_target)
    if emulate:
        say(f"note: this CPU does not have {manifest.cpu_target}'s int8 kernels: photos are embedded on the "
            "engine's emulation")
    with engine_as_made(engine_dir, emulate, threads=threads, use_memory=False, pick_variant=False) as engine:
        embeddings = embed_photos(engine, [item.path for item in items], say)
    mean, projection = whitened_projection(embeddings, dims)
    captions = [[caption_words(c) for c in item.captions] for item in items]
    data = CaptionMemory.remembering(embeddings, captions, mean, projection).to_bytes()
    import hashlib  # here: the CLI imports this module on every start, and hashlib loads OpenSSL

    digest = hashlib.sha256(data).hexdigest()
    name = f"caption_memory-{digest[:12]}.npz"
    path = os.path.join(engine_dir, name)
    existed = os.path.exists(path)  # the same bytes built before: the manifest may already name it
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
    except OSError as exc:
        raise EdgeVLMError(f"cannot write the caption memory into {engine_dir}: {exc.strerror}; "
                           "free some space or copy the engine somewhere writable") from exc
    settings = CaptionMemorySettings(file=FILE_KEY, images=len(items), captions=sum(map(len, captions)),
                                     neighbours=neighbours, beam_size=beam_size, logprob_weight=logprob_weight,
                                     dims=projection.shape[1], built_from=os.path.basename(captions_path))
    previous: list[str] = []

    def record(manifest: Manifest) -> Manifest:
        if FILE_KEY in manifest.files and manifest.files[FILE_KEY].path != name:
            previous.append(manifest.files[FILE_KEY].path)
        files = {**manifest.files, FILE_KEY: FileEntry(name, digest, os.path.getsize(path))}
        return manifest.replace(files=files, caption_memory=settings)

    try:
        manifest = update_manifest(engine_dir, record, "the caption memory")
    except EdgeVLMError:
        if not existed:
            os.remove(path)  # the manifest does not name it: leave no orphan
        raise
    for stale in previous:
        try:
            os.remove(os.path.join(engine_dir, stale))
        except OSError:
            log.warning("could not remove the replaced caption memory %s", stale)
    return manifest
