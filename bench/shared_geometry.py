#!/usr/bin/env python3
"""Which picture a shared MobileNetV2 backbone should see (docs/results-distill.md).

The classifier's own preprocessing is torchvision's: shorter side to 256, centre 224x224 crop.
A backbone shared with dense heads sees the whole frame instead. This runs the ONNX model in
ONNX Runtime (spatial dims made symbolic, so any input size runs) on each dev clip, with:
- crop: the classifier's own preprocessing;
- stretch224: the whole frame stretched to 224x224 (what assets/bundles/mobilenet_v2_shared.toml does);
- keepS: the whole frame with its aspect ratio, shorter side S (each side rounded to 32).
It counts, per clip, the frames whose top-1 is the reference top-1 of ../shared/data/reference
(ONNX Runtime on the crop), and on handheld_cockatoo the frames whose top-1 is its label (89).
Every 5th frame of the other clips, every frame of the labelled one.

Usage, from the repository root: bench/shared_geometry.py  (ONNX Runtime, onnx and Pillow, e.g. the peers venv)
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

from torchvision_pre import MODELS, reference_top1, torchvision

DATA = "../shared/data"
MEAN, STD = (np.array(v, np.float32) for v in MODELS["mobilenet_v2"])


def session():
    m = onnx.load(f"{DATA}/models/imagenet/mobilenet_v2.onnx")
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    return ort.InferenceSession(m.SerializeToString())


def keep(im, short):
    w, h = im.size
    s = short / min(w, h)
    return im.resize((round(w * s / 32) * 32, round(h * s / 32) * 32), Image.BILINEAR)


def main():
    s = session()

    def top1(im):
        x = (np.asarray(im, np.float32) / 255 - MEAN) / STD
        return int(np.argmax(s.run(None, {"input": x.transpose(2, 0, 1)[None]})[0]))

    geometries = {"crop": torchvision, "stretch224": lambda im: im.resize((224, 224), Image.BILINEAR)}
    for short in (128, 160, 192, 224):
        geometries[f"keep{short}"] = lambda im, short=short: keep(im, short)
    video = f"{DATA}/video"
    for clip in sorted(os.listdir(video)):
        ref = reference_top1(DATA, clip, "mobilenet_v2")
        labelled = clip == "handheld_cockatoo"
        frames = sorted(os.listdir(f"{video}/{clip}"))
        frames = frames if labelled else frames[::5]
        hits = dict.fromkeys(geometries, 0)
        for name in frames:
            im = Image.open(f"{video}/{clip}/{name}").convert("RGB")
            for g, fit in geometries.items():
                hits[g] += top1(fit(im)) == (89 if labelled else ref[name])
        sizes = " ".join(f"{g}={geometries[g](im).size[0]}x{geometries[g](im).size[1]}" for g in geometries)
        what = "label 89" if labelled else "reference top-1"
        print(f"{clip} ({len(frames)} frames, {what}): " + " ".join(f"{g} {hits[g]}" for g in geometries))
        print(f"  input sizes: {sizes}")


if __name__ == "__main__":
    main()
