#!/usr/bin/env python3
"""Offline check of a motion-compensated hold for a segmenter (docs/results-reuse.md).

Skip-N runs the model on every Nth frame and holds its mask in between. The variant here
moves the held mask by block motion instead: each 8x8 block of the current frame (256x256,
grey) that differs from the key frame by more than 3 grey levels on average takes the key
frame's probabilities from its best match within +-6 px (least mean absolute difference).
Both are compared with the model run on every frame: mean IoU of the p > 0.5 masks.

Usage, from the repository root: bench/warp_hold.py CLIP_DIR [MODEL.onnx]  (ONNX Runtime and Pillow, e.g. the peers venv)
"""
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

B, R, NOISE = 8, 6, 3.0


def iou(a, b):
    a, b = a > 0.5, b > 0.5
    u = (a | b).sum()
    return 1.0 if u == 0 else (a & b).sum() / u


def warp(key_g, cur_g, key_p):
    out = key_p.copy()
    h, w = cur_g.shape
    pad, padp = np.pad(key_g, R, mode="edge"), np.pad(key_p, R, mode="edge")
    for by in range(0, h, B):
        for bx in range(0, w, B):
            cur = cur_g[by:by + B, bx:bx + B]
            best = (np.abs(cur - key_g[by:by + B, bx:bx + B]).mean(), 0, 0)
            if best[0] <= NOISE:
                continue
            for dy in range(-R, R + 1):
                for dx in range(-R, R + 1):
                    sad = np.abs(cur - pad[by + R + dy:by + R + dy + B, bx + R + dx:bx + R + dx + B]).mean()
                    if sad < best[0] - 1e-6:
                        best = (sad, dy, dx)
            _, dy, dx = best
            out[by:by + B, bx:bx + B] = padp[by + R + dy:by + R + dy + B, bx + R + dx:bx + R + dx + B]
    return out


def main():
    clip = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/models/mediapipe/selfie_segmentation.onnx"
    s = ort.InferenceSession(model)
    name = s.get_inputs()[0].name
    nhwc = s.get_inputs()[0].shape[-1] == 3
    grey, probs = [], []
    for f in sorted(os.listdir(clip)):
        im = Image.open(os.path.join(clip, f)).convert("RGB").resize((256, 256), Image.BILINEAR)
        x = np.asarray(im, np.float32) / 255
        x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
        probs.append(s.run(None, {name: x})[0].reshape(256, 256))
        grey.append(np.asarray(im.convert("L"), np.float32))
    cover = np.mean([(p > 0.5).mean() for p in probs])
    print(f"{os.path.basename(clip)}: {len(probs)} frames, mask cover {cover:.3f}")
    for n in (2, 3, 4):
        for mode in ("hold", "warp"):
            ious = []
            for t in range(1, len(probs)):
                k = t // n * n
                pred = probs[k] if mode == "hold" else warp(grey[k], grey[t], probs[k])
                ious.append(1.0 if k == t else iou(pred, probs[t]))
            worst = np.sort(ious)[len(ious) // 10]
            print(f"skip-{n} {mode}: mean IoU {np.mean(ious):.3f}, worst decile {worst:.3f}")


if __name__ == "__main__":
    main()
