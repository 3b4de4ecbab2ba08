"""The INT8 stem re-expressed on uint8 space-to-depth pixels: the same outputs as the graph
it came from, for any per-colour normalisation; graphs it does not fit are left alone."""

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from edgevlm.calibration.stem_space_to_depth import rewrite_stem
from edgevlm.runtime.manifest import Preprocess
from edgevlm.runtime.preprocess import preprocess_bgr
from tests.support import onnx_model

SIZE = 16
PREPROCESS = Preprocess(image_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _float_stem(path, stride=2):
    """pixels (1,3,S,S) -> 3x3 conv (3->4, stride, pad 1) -> ReLU6 -> 1x1 conv (4->2)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5, "w1"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(2).astype(np.float32) * 0.1, "b2"),
             numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
    nodes = [helper.make_node("Conv", ["pixels", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[stride] * 2,
                              pads=[1] * 4, name="/encoder/_conv_stem/Conv"),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["out"], kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    onnx.save(onnx_model(graph), path)


def _images(count, seed):
    return [np.random.default_rng(seed + i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for i in range(count)]


def _quantized(tmp_path, stride=2, preprocess=PREPROCESS):
    """The float graph and its static QDQ quantization, calibrated on ``preprocess``'s pixels."""
    float_path, int8_path = str(tmp_path / "float.onnx"), str(tmp_path / "int8.onnx")
    _float_stem(float_path, stride)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter({"pixels": _float_pixels(image, preprocess)} for image in _images(8, 10))

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(float_path, int8_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Clip"],
                    extra_options={"WeightSymmetric": True})
    return float_path, int8_path


def _float_pixels(image, preprocess):
    return preprocess_bgr(image, SIZE, preprocess.mean, preprocess.std, color_order=preprocess.color_order)[None]


def _run(path, pixels):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"pixels": pixels})[0]


IMAGENET = dataclasses.replace(PREPROCESS, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.mark.parametrize("preprocess", [PREPROCESS, IMAGENET], ids=["one step", "a step per colour"])
def test_the_rewritten_graph_gives_the_same_outputs(tmp_path, preprocess):
    _, int8_path = _quantized(tmp_path, preprocess=preprocess)
    model = onnx.load(int8_path)
    new = rewrite_stem(model, preprocess)
    assert (new.layout, new.color_order) == ("uint8-s2d2", "BGR") and len(new.pixel_table) == 3
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.UINT8]
    assert "QuantizeLinear" not in {n.op_type for n in model.graph.node[:2]}
    rewritten = str(tmp_path / "s2d.onnx")
    onnx.save(model, rewritten)
    for image in _images(4, 0):
        raw = preprocess_bgr(image, SIZE, color_order=new.color_order, layout=new.layout, pad_value=new.pad_value,
                             pixel_table=new.pixel_table)[None]
        np.testing.assert_array_equal(_run(rewritten, raw), _run(int8_path, _float_pixels(image, preprocess)))


@pytest.mark.parametrize("case", ["stride 1", "already uint8"])
def test_graphs_it_does_not_fit_are_left_alone(tmp_path, case):
    _, int8_path = _quantized(tmp_path, stride=1 if case == "stride 1" else 2)
    model = onnx.load(int8_path)
    if case == "already uint8":
        assert rewrite_stem(model, PREPROCESS) is not None
    before = model.SerializeToString()
    assert rewrite_stem(model, PREPROCESS) is None  # the graph's own shape refuses, not the record
    assert model.SerializeToString() == before
