#!/usr/bin/python3
"""Writes the split-inference benchmark's synthetic CNN as ONNX, with the standard library only.

The committed Fashion-MNIST fixture runs in about 0.1 ms, far below any network round trip, so
on it device-only always wins and no network condition can tell the planner's choices apart.
This model is a phone-camera-sized stand-in: a 3x64x64 input (48 KiB), three conv/relu/pool
stages of 64, 128 and 128 channels (activations from 1 MiB down to 32 KiB), then 8192 -> 256
-> 10 dense layers (1 KiB cut after the first), about 120 million multiply-adds (several ms of
CPU, so a device held to 10% of a CPU by a cgroup quota with 10 ms periods is throttled over
many periods per request rather than by the luck of where one request falls). Weights are
deterministic pseudo-random (seed 7), so every run and both sides build the same bytes.

    split_model.py OUT.onnx
"""
import array
import random
import struct
import sys


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def attr_ints(name, values):
    body = field_bytes(1, name) + field_varint(20, 7)  # type INTS
    for v in values:
        body += field_varint(8, v)
    return body


def attr_int(name, value):
    return field_bytes(1, name) + field_varint(20, 2) + field_varint(3, value)  # type INT


def node(op, inputs, outputs, name, attrs=()):
    body = b"".join(field_bytes(1, i) for i in inputs)
    body += b"".join(field_bytes(2, o) for o in outputs)
    body += field_bytes(3, name) + field_bytes(4, op)
    body += b"".join(field_bytes(5, a) for a in attrs)
    return field_bytes(1, body)


def tensor(name, dims, values):
    body = b"".join(field_varint(1, d) for d in dims)
    body += field_varint(2, 1) + field_bytes(8, name)
    raw = array.array("f", values)
    if sys.byteorder != "little":
        raw.byteswap()
    body += field_bytes(9, raw.tobytes())
    return field_bytes(5, body)


def value_info(num, name, dims):
    shape = b""
    for d in dims:
        dim = field_bytes(2, d) if isinstance(d, str) else field_varint(1, d)
        shape += field_bytes(1, dim)
    tensor_type = field_varint(1, 1) + field_bytes(2, shape)
    return field_bytes(num, field_bytes(1, name) + field_bytes(2, field_bytes(1, tensor_type)))


def weights(rng, count, fan_in):
    scale = (6.0 / fan_in) ** 0.5
    return [rng.uniform(-scale, scale) for _ in range(count)]


def build():
    rng = random.Random(7)
    g = b""
    inits = b""
    prev, channels = "x", 3
    for i, width in enumerate((64, 128, 128), start=1):
        w, b = f"conv{i}.w", f"conv{i}.b"
        inits += tensor(w, [width, channels, 3, 3], weights(rng, width * channels * 9, channels * 9))
        inits += tensor(b, [width], weights(rng, width, 64))
        g += node("Conv", [prev, w, b], [f"c{i}"], f"conv{i}",
                  [attr_ints("kernel_shape", [3, 3]), attr_ints("pads", [1, 1, 1, 1])])
        g += node("Relu", [f"c{i}"], [f"r{i}"], f"relu{i}")
        g += node("MaxPool", [f"r{i}"], [f"p{i}"], f"pool{i}",
                  [attr_ints("kernel_shape", [2, 2]), attr_ints("strides", [2, 2])])
        prev, channels = f"p{i}", width
    g += node("Flatten", [prev], ["f"], "flatten", [attr_int("axis", 1)])
    flat = channels * 8 * 8
    inits += tensor("fc1.w", [256, flat], weights(rng, 256 * flat, flat))
    inits += tensor("fc1.b", [256], weights(rng, 256, flat))
    g += node("Gemm", ["f", "fc1.w", "fc1.b"], ["g1"], "fc1", [attr_int("transB", 1)])
    g += node("Relu", ["g1"], ["h1"], "fc1_relu")
    inits += tensor("fc2.w", [10, 256], weights(rng, 10 * 256, 256))
    inits += tensor("fc2.b", [10], weights(rng, 10, 256))
    g += node("Gemm", ["h1", "fc2.w", "fc2.b"], ["logits"], "fc2", [attr_int("transB", 1)])
    g += field_bytes(2, "split_bench_cnn") + inits
    g += value_info(11, "x", ["batch", 3, 64, 64])
    g += value_info(12, "logits", ["batch", 10])
    opset = field_varint(2, 11)
    return (field_varint(1, 7) + field_bytes(2, "concord-split-bench") + field_bytes(3, "1")
            + field_bytes(7, g) + field_bytes(8, opset))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], "wb") as f:
        f.write(build())
