#!/usr/bin/env python3
"""ONNX Runtime full inference on the frames `framecache bench` already preprocessed.

`framecache bench --baseline ort` writes the model's input tensors (float32, little endian,
NCHW, one after the other) to a file and runs this script on it. The script times
`InferenceSession.run` per frame (inference only: decoding and preprocessing happened in the
engine), writes the first output of every frame to --outputs, and prints JSON on stdout:
{"onnxruntime": version, "threads": n, "ms": [per-frame median over repeats]}.

Needs: pip install onnxruntime numpy
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="raw float32 NCHW tensors")
    p.add_argument("--shape", required=True, help="N,C,H,W of one frame, e.g. 1,3,224,224")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs on the first frame")
    p.add_argument("--repeat", type=int, default=1, help="passes over the clip; per-frame median")
    p.add_argument("--outputs", required=True, help="where to write the first output of every frame")
    a = p.parse_args()

    shape = [int(d) for d in a.shape.split(",")]
    data = np.fromfile(a.input, dtype="<f4")
    if data.size != a.frames * int(np.prod(shape)):
        print(f"{a.input}: {data.size} floats, expected {a.frames} x {shape}", file=sys.stderr)
        return 2
    frames = data.reshape([a.frames] + shape)

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, sess_options=so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    for _ in range(a.warmup):
        sess.run(None, {name: frames[0]})
    times = [[] for _ in range(a.frames)]
    outputs = [None] * a.frames
    for _ in range(a.repeat):
        for i in range(a.frames):
            t = time.perf_counter()
            out = sess.run(None, {name: frames[i]})
            times[i].append((time.perf_counter() - t) * 1e3)
            outputs[i] = out[0]
    np.concatenate([o.astype("<f4").ravel() for o in outputs]).tofile(a.outputs)
    json.dump({"onnxruntime": ort.__version__, "threads": a.threads, "ms": [statistics.median(t) for t in times]},
              sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
