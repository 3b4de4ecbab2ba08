"""An INT8 engine made for another CPU, rewritten to compute on this one what that CPU's
integer kernels compute (``python -m edgevlm.scripts.int8_emulation ENGINE_DIR OUT_DIR``;
``edgevlm quantize`` gates an engine made for another CPU on it).

Why: the shipped engine carries a variant for AVX-512 VNNI / AMX CPUs (8-bit weights, the
whole encoder int8). Run on an AVX2-only CPU, onnxruntime's u8 x s8 kernels add products
pairwise in int16 (``vpmaddubsw``) and saturate, so the variant's captions there are not
the ones a VNNI CPU (``vpdpbusd``: int32 sums) gives, and it could be judged (gated, its
thresholds tuned) only on a VNNI machine. The integer arithmetic itself is exact, so a
float graph computing the same products gives VNNI's results up to float32 rounding:
- every ``DequantizeLinear`` of a stored weight or bias becomes its float value
  ((q - zero point) x scale, per channel where the scale is), so no quantized convolution
  is fused back in;
- an activation's QuantizeLinear -> DequantizeLinear pair becomes the same arithmetic in
  float ops (divide, round half to even, add the zero point, clip to the integer type's
  range; subtract, multiply): onnxruntime's optimizers remove or fuse Q/DQ pairs (measured:
  the graph optimized at its basic level strays by 2.0 in visual tokens from the same graph
  unoptimized), never Div/Round/Clip; other DequantizeLinears (of a Gather from a stored
  int8 table, or of a uint8 graph input such as space-to-depth pixels) are exact on any CPU
  and stay;
- every ``MatMulInteger`` becomes ``MatMul`` of the zero-point-shifted operands in float
  (int32 again after it; float32 accumulation of K products rounds far below one integer
  step of the scores that matter). Anything else integer (fused QLinear* ops, per-axis or
  blocked activation quantization, subgraphs) is refused, never emulated wrong.
The output is an engine folder (manifest sha256s renewed, ``source.emulates`` naming what
it emulates) to measure with ``edgevlm eval``, ``edgevlm quantize``'s gate and
``--tune-abstention`` on any x86 CPU; it is slower than either engine and is never shipped.
Checked against hardware: MODEL_CARD.md ("Judging the VNNI variant on an AVX2 CPU").
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from typing import Iterator

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.cpu_isa import detected_cpu_target, same_layout
from edgevlm.runtime.engine import CaptionEngine


# Integer kernels already fused (what onnxruntime's optimizer or a QOperator export makes):
# they would run this CPU's kernels as they are, so a graph holding one is refused.
FUSED_INTEGER_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "DynamicQuantizeMatMul",
                               "MatMulIntegerToFloat", "QGemm", "QLinearAdd", "QLinearMul", "QAttention",
                               "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool",
                               "QLinearConcat", "QLinearSoftmax", "DynamicQuantizeLSTM"})


def _dequantized(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    """What DequantizeLinear computes: (q - zero_point) x scale, float32, per ``axis`` when
    the scale is a vector."""
    q = q.astype(np.float32)
    zp = np.zeros_like(scale, np.float32) if zero_point is None else zero_point.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale).astype(np.float32)


def emulate_graph(model):
    """onnx ModelProto (in place) -> (the same, {"dequantized": n, "matmul_integer": n,
    "quantize_linear": n}). Nodes are visited in the graph's (topological) order, so a
    QuantizeLinear is rewritten before the DequantizeLinear reading it."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    stored = {init.name: init for init in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def value(name: str) -> np.ndarray | None:
        if name in stored:
            return numpy_helper.to_array(stored[name])
        if name in constants:
            found = helper.get_attribute_value(constants[name].attribute[0])  # value, value_float, value_ints...
            return numpy_helper.to_array(found) if isinstance(found, onnx.TensorProto) else np.array(found)
        return None

    def constant(name: str, node) -> np.ndarray:
        found = value(name)
        if found is None:
            raise EdgeVLMError(f"cannot emulate {node.op_type} {node.name}: its {name} is computed, not stored")
        return found

    def refuse_unless_per_tensor(node, scale: np.ndarray) -> None:
        """Activations are quantized per tensor in our engines; anything else is refused
        rather than emulated wrong."""
        odd = [a.name for a in node.attribute if a.name in ("block_size", "output_dtype", "saturate") and
               helper.get_attribute_value(a)]
        if scale.size != 1 or odd:
            raise EdgeVLMError(f"cannot emulate {node.op_type} {node.name}: only per-tensor activation "
                               f"quantization is emulated ({'scale of ' + str(scale.size) if scale.size != 1 else odd})")

    fused = sorted({n.op_type for n in graph.node} & FUSED_INTEGER_OPS)
    nested = sorted({n.op_type for n in graph.node if any(a.type in (onnx.AttributeProto.GRAPH,
                                                                     onnx.AttributeProto.GRAPHS) for a in n.attribute)})
    if fused or nested:
        raise EdgeVLMError(f"cannot emulate a graph with {', '.join(fused + nested)}: only QDQ and MatMulInteger "
                           "graphs (what edgevlm quantize writes) are rewritten; emulate the engine before any "
                           "onnxruntime optimization")

    new_nodes, new_inits = [], []
    counts = {"dequantized": 0, "matmul_integer": 0, "quantize_linear": 0}
    quantized: set[str] = set()  # QuantizeLinear outputs, now integers held in float
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and value(node.input[0]) is not None:
            if any(a.name == "block_size" and a.i for a in node.attribute):
                raise EdgeVLMError(f"cannot emulate DequantizeLinear {node.name}: blocked quantization")
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zero_point = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            floats = _dequantized(value(node.input[0]), constant(node.input[1], node), zero_point, axis)
            new_inits.append(numpy_helper.from_array(floats, node.output[0]))
            counts["dequantized"] += 1
            continue
        if node.op_type == "MatMulInteger":
            a, b = node.input[0], node.input[1]
            a_zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            b_zp = constant(node.input[3], node) if len(node.input) > 3 and node.input[3] else None
            stem = node.output[0]
            new_nodes.append(helper.make_node("Cast", [a], [f"{stem}/a_float"], to=onnx.TensorProto.FLOAT))
            shifted = f"{stem}/a_float"
            if a_zp is not None:
                new_nodes.append(helper.make_node("Cast", [a_zp], [f"{stem}/a_zp_float"], to=onnx.TensorProto.FLOAT))
                new_nodes.append(helper.make_node("Sub", [shifted, f"{stem}/a_zp_float"], [f"{stem}/a_shifted"]))
                shifted = f"{stem}/a_shifted"
            weights = value(b)
            if weights is None:
                raise EdgeVLMError(f"cannot emulate MatMulInteger {node.name}: its second input is not a stored weight")
            shift = np.float32(0) if b_zp is None else b_zp.astype(np.float32)  # scalar or per column (N,)
            new_inits.append(numpy_helper.from_array(weights.astype(np.float32) - shift, f"{stem}/b_float"))
            new_nodes.append(helper.make_node("MatMul", [shifted, f"{stem}/b_float"], [f"{stem}/float"]))
            new_nodes.append(helper.make_node("Cast", [f"{stem}/float"], [stem], to=onnx.TensorProto.INT32))
            counts["matmul_integer"] += 1
            continue
        if node.op_type == "QuantizeLinear":  # an activation's: the integer it stands for, held in float
            scale, zp = node.input[1], node.input[2] if len(node.input) > 2 and node.input[2] else None
            refuse_unless_per_tensor(node, constant(scale, node))
            kind = constant(zp, node).dtype if zp is not None else np.dtype(np.uint8)  # ONNX's default: uint8
            info = np.iinfo(kind)
            stem = node.output[0]
            new_inits.extend([numpy_helper.from_array(np.array(info.min, np.float32), f"{stem}/qmin"),
                              numpy_helper.from_array(np.array(info.max, np.float32), f"{stem}/qmax")])
            new_nodes.append(helper.make_node("Div", [node.input[0], scale], [f"{stem}/scaled"]))
            new_nodes.append(helper.make_node("Round", [f"{stem}/scaled"], [f"{stem}/rounded"]))  # half to even, as Q
            shifted = f"{stem}/rounded"
            if zp is not None:
                new_inits.append(numpy_helper.from_array(constant(zp, node).astype(np.float32), f"{stem}/zp_float"))
                new_nodes.append(helper.make_node("Add", [shifted, f"{stem}/zp_float"], [f"{stem}/shifted"]))
                shifted = f"{stem}/shifted"
            new_nodes.append(helper.make_node("Clip", [shifted, f"{stem}/qmin", f"{stem}/qmax"], [stem]))
            quantized.add(stem)
            counts["quantize_linear"] += 1
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized:  # of an activation above
            stem = node.output[0]
            refuse_unless_per_tensor(node, constant(node.input[1], node))
            centred = node.input[0]
            if len(node.input) > 2 and node.input[2]:  # its own zero point (normally the Q's)
                new_inits.append(numpy_helper.from_array(constant(node.input[2], node).astype(np.float32),
                                                         f"{stem}/zp_float"))
                new_nodes.append(helper.make_node("Sub", [centred, f"{stem}/zp_float"], [f"{stem}/centred"]))
                centred = f"{stem}/centred"
            new_nodes.append(helper.make_node("Mul", [centred, node.input[1]], [stem]))
            continue
        new_nodes.append(node)
    retyped = quantized  # integer tensors now held in float: their declared types go
    kept_info = [info for info in graph.value_info if info.name not in retyped]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model, counts


def emulate_engine(engine_dir: str, out_dir: str) -> dict:
    """Write to the new folder ``out_dir`` (atomically: whole or not at all) a copy of the INT8
    engine with every ONNX graph emulated (``emulate_graph``), the manifest's sha256s renewed
    and ``source.emulates`` naming the engine's folder -> counts per graph. The copy is for
    measuring: ``add-variant`` refuses it."""
    try:
        import onnx
    except ModuleNotFoundError:
        raise EdgeVLMError("emulating an INT8 engine made for another CPU needs onnx, which is not installed: "
                           "pip install '.[calibrate]'") from None

    from edgevlm.fileio import atomic_dir
    from edgevlm.runtime.file_records import sha256_file
    from edgevlm.runtime.manifest import engine_file_names, load_manifest

    manifest = load_manifest(engine_dir)
    if manifest.source.get("emulates"):
        raise EdgeVLMError(f"{engine_dir} is already an emulation (of {manifest.source['emulates']}); "
                           "emulate the engine itself")
    if os.path.exists(out_dir):
        raise EdgeVLMError(f"{out_dir} exists; give a new folder")
    files, report = dict(manifest.files), {}
    with atomic_dir(out_dir) as staging:
        for name in engine_file_names(manifest)[:-1]:  # the listed files (no variants/); the manifest last
            shutil.copy2(os.path.join(engine_dir, name), os.path.join(staging, name))
        for key, entry in manifest.files.items():
            if not entry.path.endswith(".onnx"):
                continue
            path = os.path.join(staging, entry.path)
            model, report[key] = emulate_graph(onnx.load(path))
            onnx.save(model, path)
            files[key] = dataclasses.replace(entry, sha256=sha256_file(path), bytes=os.path.getsize(path))
        source = dict(manifest.source, emulates=os.path.basename(os.path.abspath(engine_dir)))
        manifest.replace(files=files, source=source).save(staging)
    return report


@contextlib.contextmanager
def emulated_copy(engine_dir: str) -> Iterator[str]:
    """The folder of ``engine_dir``'s emulation (``emulate_engine``), in a temporary folder
    removed on leaving, however that happens."""
    with tempfile.TemporaryDirectory(prefix="edgevlm-emulated-") as staging:
        emulated = os.path.join(staging, "engine")
        emulate_engine(engine_dir, emulated)
        yield emulated


def emulation_needed(target: str | None) -> bool:
    """Is an engine made for ``target`` (None: any CPU) computed differently on this CPU, so
    that measuring it here, or keeping embeddings of it, needs its emulation?"""
    here = detected_cpu_target()  # the arithmetic this CPU does, whatever EDGEVLM_CPU_TARGET says
    return target is not None and (here is None or not same_layout(target, here))


@contextlib.contextmanager
def engine_as_made(engine_dir: str, emulate: bool, **options) -> Iterator[CaptionEngine]:
    """``engine_dir``'s CaptionEngine (``options`` passed on), or with ``emulate`` that of its
    emulated copy (``emulated_copy``), which runs itself, no variant of it."""
    if not emulate:
        with CaptionEngine(engine_dir, **options) as engine:
            yield engine
        return
    with emulated_copy(engine_dir) as emulated, CaptionEngine(emulated, **{**options, "pick_variant": False}) as engine:
        yield engine
