#!/usr/bin/env python3
"""The ONNX Runtime int8 peer of docs/results-int8.md: ONNX Runtime's own static quantization
(QDQ, per-channel int8 weights, uint8 activations, min/max calibration) of MobileNetV2 and
EfficientNet-Lite0, calibrated on the frames `framecache quantize` uses (32 evenly spread
frames of handheld_office_short and of fast_animation_bunny), then fp32 and int8 timed
interleaved frame by frame, one thread, on every dev clip, with int8's top-1 agreement with
fp32 and with the reference tables.

    python3 bench/ort_int8.py [FRAMES_PER_CLIP]

Preprocessing is the torchvision pipeline (Pillow Resize(256) + CenterCrop(224)), as in
bench/python_parity.py. Needs numpy, pillow, onnx and onnxruntime (the peers venv of
../shared/tools/peers has them). Prints one line per (model, clip).
"""
import glob, os, statistics, sys, tempfile, time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from torchvision_pre import MODELS, reference_top1, torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FRAMECACHE_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
FRAMES = int(sys.argv[1]) if len(sys.argv) > 1 else 80
CALIBRATE = ["handheld_office_short", "fast_animation_bunny"]


def tensors(files, mean, std):
    for f in files:
        x = (np.asarray(torchvision(Image.open(f).convert("RGB")), np.float32) / 255 - mean) / std
        yield x.transpose(2, 0, 1)[None].copy()


class Reader(CalibrationDataReader):
    def __init__(self, name, batches):
        self.it = iter({name: b} for b in batches)

    def get_next(self):
        return next(self.it, None)


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def main():
    print(f"onnxruntime {ort.__version__}, one thread, {FRAMES} frames per clip")
    tmp = tempfile.mkdtemp()
    for model, (mean, std) in MODELS.items():
        mean, std = np.array(mean, np.float32), np.array(std, np.float32)
        path = os.path.join(DATA, "models/imagenet", model + ".onnx")
        name = session(path).get_inputs()[0].name
        cal = []
        for clip in CALIBRATE:
            files = sorted(glob.glob(os.path.join(DATA, "video", clip, "frame_*.png")))
            n = min(32, len(files))
            cal += list(tensors([files[k * len(files) // n] for k in range(n)], mean, std))
        pre, q = os.path.join(tmp, model + ".pre.onnx"), os.path.join(tmp, model + ".int8.onnx")
        quant_pre_process(path, pre, skip_symbolic_shape=True)
        quantize_static(pre, q, Reader(name, cal), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        fp32, int8 = session(path), session(q)
        for clip in sorted(glob.glob(os.path.join(DATA, "video", "*"))):
            files = sorted(glob.glob(os.path.join(clip, "frame_*.png")))[:FRAMES]
            xs = list(tensors(files, mean, std))
            for s in (fp32, int8):
                s.run(None, {name: xs[0]})
            ms = {0: [], 1: []}
            top = {0: [], 1: []}
            for i, x in enumerate(xs):
                for k in ((0, 1) if i % 2 == 0 else (1, 0)):
                    s = (fp32, int8)[k]
                    t = time.perf_counter()
                    y = s.run(None, {name: x})[0]
                    ms[k].append((time.perf_counter() - t) * 1e3)
                    top[k].append(int(y.argmax()))
            agree = sum(a == b for a, b in zip(top[0], top[1])) / len(xs)
            ref = reference_top1(DATA, os.path.basename(clip), model)
            acc = ""
            if ref is not None:
                names = [os.path.basename(f) for f in files]
                rate = lambda t: sum(ref.get(f) == p for f, p in zip(names, t)) / max(1, sum(f in ref for f in names))
                acc = f", top-1 vs reference fp32 {rate(top[0]):.3f} int8 {rate(top[1]):.3f}"
            m0, m1 = statistics.median(ms[0][1:]), statistics.median(ms[1][1:])
            print(f"{model:20s} {os.path.basename(clip):26s} fp32 {m0:.2f} ms, int8 {m1:.2f} ms "
                  f"({m0 / m1:.2f}x), int8 top-1 agreement with fp32 {agree:.3f}{acc}")


if __name__ == "__main__":
    main()
