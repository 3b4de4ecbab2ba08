"""Re-express an INT8 vision graph's stem so it takes uint8 pixels, space-to-depth: the same
integers as the graph it came from, computed faster, with no float input.

Our encoder's stem is a 3 x 3, stride-2 convolution on 3 colour channels. onnxruntime's INT8
kernels run it as an im2col of 27-byte rows: 219 us of the vision graph's ~3 ms of profiled
kernels on an AVX-512 VNNI EPYC. The same convolution is a 2 x 2, stride-1 one on the image
cut into 2 x 2 blocks of 12 channels, the missing taps zero: 145 us there (119 against 224 us
as single-convolution graphs), though it multiplies 78% more. The image then arrives in that layout, as uint8
(runtime/pixel_layout.py: ~0.09 ms a frame, what the float blob cost), which also drops the
graph's QuantizeLinear and its NHWC transpose.

Why the integers stay the same: the graph's first node quantizes the normalised pixel to
uint8, and the normalisation is per colour and elementwise, so that integer is a function of
the raw pixel value alone: a table of 256 entries per colour (``pixel_table``), read off by
running the runtime's own float preprocessing and the graph's own QuantizeLinear (through
onnxruntime: its rounding of the float path's near-ties is what the gate measured) over
every pixel value. The runtime looks the raw pixels up in it (cv2.LUT, ~45 us), the border
keeps the zero point (the float model's zero padding), the weights are moved, never
re-quantized, and a BGR input needs no swap: the weights' colours are permuted instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevlm.runtime.manifest import Preprocess
from edgevlm.runtime.pixel_layout import BLOCK, FLOAT_NCHW, UINT8_S2D2, space_to_depth_shape
from edgevlm.runtime.preprocess import preprocess_bgr

from .graph_links import GraphLinks


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_stem(conv: onnx.NodeProto) -> bool:
    a = _attributes(conv)
    return (conv.op_type == "Conv" and list(a.get("kernel_shape", [])) == [3, 3] and list(a.get("strides", [])) == [2, 2]
            and list(a.get("pads", [0] * 4)) == [1, 1, 1, 1] and a.get("group", 1) == 1
            and list(a.get("dilations", [1, 1])) == [1, 1] and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def pixel_table(preprocess: Preprocess, step: np.ndarray, zero_point: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """(3, 256) in BGR order: the uint8 value the graph's QuantizeLinear (``step``,
    ``zero_point``) gives a raw pixel value after the runtime's float preprocessing."""
    size = max(preprocess.image_size, 16)  # at least 256 pixels: every value appears
    values = (np.arange(size * size) % 256).astype(np.uint8).reshape(size, size)
    image = np.repeat(values[:, :, None], 3, axis=2)  # every value, in every colour
    normalised = preprocess_bgr(image, size, preprocess.mean, preprocess.std, preprocess.interpolation,
                                preprocess.color_order, preprocess.scale)[None]  # (1, 3, S, S)
    quantize = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "step", "zero"], ["q"])], "pixel_table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(normalised.shape))],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, None)],
        [numpy_helper.from_array(step, "step"), numpy_helper.from_array(zero_point, "zero")])
    model = helper.make_model(quantize, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    q = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": normalised})[0][0]  # (3, S, S) in the model's colour order
    table = np.zeros((3, 256), np.uint8)
    for channel in range(3):
        table[channel, values.ravel()] = q[channel].ravel()
        if not np.array_equal(table[channel][values], q[channel]):  # one pixel value, one integer
            raise ValueError("the input quantization is not a function of the pixel value")
    bgr = table[::-1] if preprocess.color_order == "RGB" else table
    return tuple(tuple(int(v) for v in row) for row in bgr)


def space_to_depth_weights(weights: np.ndarray, reverse_colours: bool) -> np.ndarray:
    """(O, 3, 3, 3) int8 stem weights -> (O, 12, 2, 2): channel (row, column, colour) of the
    2 x 2 block, taps past the 3 x 3 kernel zero; ``reverse_colours``: RGB weights for a BGR
    input."""
    out = np.zeros((weights.shape[0], BLOCK * BLOCK * 3, 2, 2), weights.dtype)
    for a in range(3):
        block_row, dy = divmod(a, BLOCK)
        for b in range(3):
            block_col, dx = divmod(b, BLOCK)
            for c in range(3):
                out[:, (dy * BLOCK + dx) * 3 + (2 - c if reverse_colours else c), block_row, block_col] = weights[:, c, a, b]
    return out


def rewrite_stem(model: onnx.ModelProto, preprocess: Preprocess, input_name: str = "pixels") -> Preprocess | None:
    """Rewrite ``model`` (a static QDQ vision graph) in place to take uint8-s2d2 pixels;
    returns the engine's new preprocess record, or None (model untouched) where the graph
    does not start with a uint8 QuantizeLinear feeding a 3 x 3, stride-2 stem."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    source = next((i for i in graph.input if i.name == input_name), None)
    size = preprocess.image_size
    if source is None or preprocess.layout != FLOAT_NCHW or size % BLOCK:
        return None
    links = GraphLinks(graph)
    quant = links.only_reader(input_name, "QuantizeLinear")
    if quant is None or len(quant.input) < 3 or _attributes(quant):
        return None
    step, zero = (numpy_helper.to_array(inits[n]) if n in inits else None for n in quant.input[1:3])
    if step is None or zero is None or step.size != 1 or zero.dtype != np.uint8:
        return None
    dequant = links.only_reader(quant.output[0], "DequantizeLinear")
    if dequant is None or list(dequant.input[1:3]) != list(quant.input[1:3]):
        return None
    conv = links.only_reader(dequant.output[0], "Conv")
    if conv is None or not _is_stem(conv):
        return None
    weight_dq = links.writer(conv.input[1])
    if weight_dq is None or weight_dq.op_type != "DequantizeLinear" or weight_dq.input[0] not in inits:
        return None
    if links.only_reader(weight_dq.output[0]) is not conv or links.only_reader(weight_dq.input[0]) is not weight_dq:
        return None  # weights shared with another node: moving them would change it too
    weights = numpy_helper.to_array(inits[weight_dq.input[0]])
    if weights.dtype != np.int8 or weights.shape[1:] != (3, 3, 3):
        return None

    table = pixel_table(preprocess, step, zero)
    reverse_colours = preprocess.color_order == "RGB"  # the input is BGR, as OpenCV decodes: no swap a frame
    inits[weight_dq.input[0]].CopyFrom(numpy_helper.from_array(space_to_depth_weights(weights, reverse_colours),
                                                               weight_dq.input[0]))
    for name, value in (("kernel_shape", [2, 2]), ("strides", [1, 1]), ("pads", [0, 0, 0, 0])):
        for attribute in conv.attribute:
            if attribute.name == name:
                attribute.CopyFrom(helper.make_attribute(name, value))
    # uint8 (B, S/2+1, S/2+1, 12) -> (B, 12, S/2+1, S/2+1): onnxruntime's INT8 convolutions
    # run channels-last, so it cancels this transpose against its own.
    channels_first = f"{input_name}_channels_first"
    dequant.input[0] = channels_first
    graph.node.remove(quant)
    graph.node.insert(0, helper.make_node("Transpose", [input_name], [channels_first], perm=[0, 3, 1, 2],
                                          name=f"{input_name}_to_channels_first"))
    batch = source.type.tensor_type.shape.dim[0]
    source.type.CopyFrom(helper.make_tensor_type_proto(
        TensorProto.UINT8, [batch.dim_param or batch.dim_value or None, *space_to_depth_shape(size)]))
    stale = {quant.output[0], dequant.output[0], weight_dq.output[0]}  # shapes or types changed
    kept = [info for info in graph.value_info if info.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    # mean and std follow the colour order they are written in, as the table does
    mean, std = (preprocess.mean[::-1], preprocess.std[::-1]) if reverse_colours else (preprocess.mean, preprocess.std)
    return dataclasses.replace(preprocess, layout=UINT8_S2D2, pad_value=int(zero.reshape(())), color_order="BGR",
                               pixel_table=table, mean=tuple(mean), std=tuple(std))
