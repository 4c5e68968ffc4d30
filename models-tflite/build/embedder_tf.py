"""dlib ResNet-34 face embedder (face-api.js FaceRecognitionNet) rebuilt in TensorFlow.

Mirrors @vladmandic/face-api 1.7.15 `src/faceRecognitionNet/*.ts`:

    x = (rgb_0_255 - [122.782, 117.001, 104.298]) / 255          (normalize + div)
    convDown 7x7/2 valid (32) -> maxPool 3/2 valid
    residual x3 (32) | residualDown (64) + residual x3 | residualDown (128) + residual x2
    residualDown (256) + residual x2 | residualDown (256, "conv256_down_out")
    mean over H, W -> matMul fc [256, 128]

conv layer   = conv2d + bias, then scale layer (x * weights + biases), optional relu
residual     = relu(convNoRelu(conv(x)) + x)        (3x3 'same', stride 1)
residualDown = relu(zero-pad-to(convNoRelu(convDown(x))) + channel-zero-pad(avgPool2/2(x)))
               where convDown is 3x3 stride 2 'valid'; when the conv output is smaller than
               the pooled shortcut it gets one zero row (bottom) and one zero column
               (right); the shortcut's channels are doubled with zeros.

Weights come from face_recognition_model.bin + -weights_manifest.json (uint8 quantized,
value = q * scale + min, computed in float64, stored as float32 like tfjs).
"""
from __future__ import annotations

import json
import os

import numpy as np

MEAN_RGB = (122.782, 117.001, 104.298)

RESIDUAL_BLOCKS = [
    ("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
    ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
    ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
    ("conv256_down", True), ("conv256_1", False), ("conv256_2", False),
    ("conv256_down_out", True),
]


def load_weights(model_dir: str) -> dict[str, np.ndarray]:
    with open(os.path.join(model_dir, "face_recognition_model-weights_manifest.json")) as f:
        manifest = json.load(f)
    out = {}
    for group in manifest:
        buf = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            if q:
                assert q["dtype"] == "uint8", q
                raw = np.frombuffer(buf, dtype=np.uint8, count=n, offset=off)
                off += n
                val = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            else:
                assert w["dtype"] == "float32"
                val = np.frombuffer(buf, dtype="<f4", count=n, offset=off).copy()
                off += 4 * n
            out[w["name"]] = val.reshape(w["shape"])
        assert off == len(buf), (off, len(buf))
    return out


def build_tf_function(weights: dict[str, np.ndarray]):
    """Returns a tf.function  f(x[1,150,150,3] float32 RGB 0..255) -> [1,128]."""
    import tensorflow as tf

    c = {k: tf.constant(v) for k, v in weights.items()}

    def conv_layer(x, prefix, stride, relu, padding):
        out = tf.nn.conv2d(x, c[prefix + "/conv/filters"], strides=stride, padding=padding)
        out = out + c[prefix + "/conv/bias"]
        out = out * c[prefix + "/scale/weights"] + c[prefix + "/scale/biases"]
        return tf.nn.relu(out) if relu else out

    def residual(x, p):
        out = conv_layer(x, p + "/conv1", 1, True, "SAME")
        out = conv_layer(out, p + "/conv2", 1, False, "SAME")
        return tf.nn.relu(out + x)

    def residual_down(x, p):
        out = conv_layer(x, p + "/conv1", 2, True, "VALID")
        out = conv_layer(out, p + "/conv2", 1, False, "SAME")
        pooled = tf.nn.avg_pool2d(x, 2, 2, "VALID")
        ph, pw, pc = pooled.shape[1], pooled.shape[2], pooled.shape[3]
        oh, ow, oc = out.shape[1], out.shape[2], out.shape[3]
        if (ph, pw) != (oh, ow):
            assert ph == oh + 1 and pw == ow + 1, (pooled.shape, out.shape)
            out = tf.pad(out, [[0, 0], [0, 1], [0, 1], [0, 0]])
        if pc != oc:
            pooled = tf.pad(pooled, [[0, 0], [0, 0], [0, 0], [0, oc - pc]])
        return tf.nn.relu(pooled + out)

    mean = tf.constant(np.array(MEAN_RGB, np.float32).reshape(1, 1, 1, 3))
    inv255 = tf.constant(np.float32(1.0 / 255.0))

    @tf.function(input_signature=[tf.TensorSpec([1, 150, 150, 3], tf.float32, name="input")])
    def embed(x):
        x = (x - mean) * inv255
        out = conv_layer(x, "conv32_down", 2, True, "VALID")
        out = tf.nn.max_pool2d(out, 3, 2, "VALID")
        for name, down in RESIDUAL_BLOCKS:
            out = residual_down(out, name) if down else residual(out, name)
        out = tf.reduce_mean(out, axis=[1, 2])
        return tf.identity(tf.matmul(out, c["fc"]), name="embedding")

    return embed
