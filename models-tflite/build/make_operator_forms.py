"""Writes the shipped dlib int8 embedder in the forms an operator's converted file may
come in, each with its sidecar description, into OUT (outside the repository):

  dlib_int8_io.tflite    full integer with int8 input and output
  dlib_uint8_io.tflite   full integer with uint8 input and output
  dlib_nchw.tflite       a channels-first input [1, 3, 150, 150] (a TRANSPOSE in front)
  dlib_open_batch.tflite the batch dimension of the input and output left open (-1)

and one facegate config per form (OUT/<form>.toml). Every form is the same network, so
`facegate --config OUT/<form>.toml eval lfw ...` must give the shipped file's figures
(docs/own-model.md, "Files converters write").

    python3.11 -m venv venv && venv/bin/pip install tensorflow==2.19.1 ai-edge-litert==2.1.4
    venv/bin/python models-tflite/build/make_operator_forms.py OUT
"""

import os
import shutil
import sys

import numpy as np
from ai_edge_litert import _pywrap_modify_model_interface as interface
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)
SOURCE = os.path.join(MODELS, "dlib_face_recognition_int8.tflite")

SIDECAR = """input_size = [150, 150]
input_layout = "{layout}"
normalisation = {{ kind = "scale_offset", scale = [1.0, 1.0, 1.0], offset = [0.0, 0.0, 0.0] }}
crop = {{ kind = "dlib_chip", padding = 0.25 }}
output_dim = 128
flip_average = true
similarity = {{ threshold_cosine = 0.917, zero_cosine = 0.5, fitted_on = "the shipped file's" }}
"""


def integer_io(dst, tensor_type):
    """Drops the float QUANTIZE/DEQUANTIZE edges (schema TensorType: INT8 9, UINT8 3)."""
    if interface.modify_model_interface(SOURCE, dst, tensor_type, tensor_type) != 0:
        raise SystemExit(f"modify_model_interface failed for {dst}")


def channels_first(dst):
    """A new [1, 3, h, w] input and a TRANSPOSE (0, 2, 3, 1) into the old NHWC input."""
    model = flatbuffer_utils.read_model(SOURCE)
    graph = model.subgraphs[0]
    old = graph.inputs[0]
    n, h, w, c = (int(v) for v in graph.tensors[old].shape)

    def add_tensor(name, shape, tensor_type, data=None):
        buf = schema.BufferT()
        if data is not None:
            buf.data = data
        model.buffers.append(buf)
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, tensor_type, len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    perm = add_tensor(b"nchw_perm", [4], schema.TensorType.INT32,
                      np.array([0, 2, 3, 1], dtype=np.int32).tobytes())
    new = add_tensor(b"input_nchw", [n, c, h, w], graph.tensors[old].type)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.TRANSPOSE
    code.version = 1
    model.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = [new, perm], [old]
    op.builtinOptionsType = schema.BuiltinOptions.TransposeOptions
    op.builtinOptions = schema.TransposeOptionsT()
    graph.operators.insert(0, op)
    graph.inputs = [new]
    for sig in model.signatureDefs or []:
        for i in sig.inputs:
            if i.tensorIndex == old:
                i.tensorIndex = new
    flatbuffer_utils.write_model(model, dst)


def open_batch(dst):
    """The input's and output's shape signature with -1 as the batch."""
    model = flatbuffer_utils.read_model(SOURCE)
    graph = model.subgraphs[0]
    for index in list(graph.inputs) + list(graph.outputs):
        t = graph.tensors[index]
        t.shapeSignature = [-1] + [int(v) for v in t.shape[1:]]
    flatbuffer_utils.write_model(model, dst)


def main(out):
    models = os.path.join(out, "models")
    os.makedirs(models, exist_ok=True)
    # The detector and mask model the forms run with.
    for f in ["face_detection_short_range.tflite", "mask_mnv2_128_int8.tflite", "MANIFEST.toml"]:
        shutil.copy(os.path.join(MODELS, f), os.path.join(models, f))
    forms = {
        "dlib_int8_io": (lambda d: integer_io(d, 9), "nhwc_rgb"),
        "dlib_uint8_io": (lambda d: integer_io(d, 3), "nhwc_rgb"),
        "dlib_nchw": (channels_first, "nchw_rgb"),
        "dlib_open_batch": (open_batch, "nhwc_rgb"),
    }
    for name, (make, layout) in forms.items():
        path = os.path.join(models, f"{name}.tflite")
        make(path)
        with open(path + ".toml", "w") as f:
            f.write(SIDECAR.format(layout=layout))
        with open(os.path.join(out, f"{name}.toml"), "w") as f:
            f.write(f'[models]\ndir = "{os.path.abspath(models)}"\nembedder = "{name}.tflite"\n')
        print(f"{name}: {os.path.getsize(path)} bytes -> {out}/{name}.toml", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
