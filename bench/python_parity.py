#!/usr/bin/env python3
"""Top-1 parity with the Python pipeline a torchvision user runs: Pillow's Resize(256) +
CenterCrop(224), ONNX Runtime, against `framecache run --full` with the project's sidecars
(resample = "pil"), frame by frame, on every clip of ../shared/data/video. Also prints the
agreement of that Python pipeline with the reference tables in ../shared/data/reference.

    python3 bench/python_parity.py [FRAMECACHE_BINARY]

Needs numpy, pillow and onnxruntime (pip). Prints one line per (model, clip).
"""
import glob, os, re, subprocess, sys

import numpy as np
import onnxruntime as ort
from PIL import Image

from torchvision_pre import MODELS, reference_top1, torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FRAMECACHE_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/framecache/target")), "release", "framecache")


labels = open(os.path.join(DATA, "models/imagenet/imagenet_classes.txt")).read().splitlines()
for model, (mean, std) in MODELS.items():
    path = os.path.join(DATA, "models/imagenet", model + ".onnx")
    sess = ort.InferenceSession(path)
    mean, std = np.array(mean, np.float32), np.array(std, np.float32)
    for clip in sorted(glob.glob(os.path.join(DATA, "video", "*"))):
        name = os.path.basename(clip)
        files = sorted(glob.glob(os.path.join(clip, "frame_*.png")))
        python = []
        for f in files:
            x = (np.asarray(torchvision(Image.open(f).convert("RGB")), np.float32) / 255 - mean) / std
            python.append(int(sess.run(None, {"input": x.transpose(2, 0, 1)[None]})[0].argmax()))
        out = subprocess.run([BIN, "run", "--model", path, "--clip", clip, "--full", "--threads", "1"],
                             capture_output=True, text=True, check=True).stdout
        ours = [m.group(1) for m in (re.match(r"\s*\d+\s.*logits: (.*) \([-\d.]+\)\s*$", l) for l in out.splitlines()) if m]
        agree = sum(labels[p] == o for p, o in zip(python, ours))
        ref = reference_top1(DATA, name, model)
        ref_note = ""
        if ref is not None:
            hits = sum(ref.get(os.path.basename(f)) == p for f, p in zip(files, python))
            ref_note = f"; Python vs reference table {hits}/{len(ref)}"
        print(f"{model:20s} {name:26s} engine vs Python {agree}/{len(python)}{ref_note}")
