"""More real footage with people for `framecache distill` (docs/results-distill.md).

The dev clips of ../shared/data hold people in one clip only (static_vtest_pedestrians, 80
frames); selfie segmentation's mask on handheld_office_short is the teacher's own false
positive (a potted plant). This extracts, from Debian's opencv-doc 4.6.0+dfsg-12
(usr/share/doc/opencv-doc/examples/data, licence: debian/copyright "Files: *", the OpenCV
package's Apache-2.0 / BSD-3-Clause), into OUT/<clip>/frame_NNNN.png:

- vtest_rest: vtest.avi frames 80..794, every 3rd (239 frames, 320x240; the dev clip is its
  frames 0..79);
- megamind_a, megamind_b: Megamind.avi (an animated film excerpt shipped with OpenCV's
  samples), every 2nd frame at 320 wide, split into its first 68 and last 67 frames;
- people_photos: basketball1.png, basketball2.png, messi5.jpg, resized to 320x240;
- photos: every JPEG photograph of examples/data except the chessboard series (left01..14,
  right01..14) and the logos, 31 in name order, each centre-cropped to 4:3 and resized to
  320x240: varied daylight scenes, objects and textures for `framecache compress` to
  calibrate and fine-tune on (docs/results-compress.md).

None of it is committed. Usage: python3 bench/distill_footage.py DEB_ROOT OUT, where DEB_ROOT is
`dpkg-deb -x opencv-doc_4.6.0+dfsg-12_all.deb DEB_ROOT` (apt-get download opencv-doc), with
opencv-python-headless from PyPI.
"""

import os
import re
import sys

import cv2


def video(src, out, start, step, width, split=None):
    cap = cv2.VideoCapture(src)
    frames, i = [], 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i >= start and (i - start) % step == 0:
            h = round(f.shape[0] * width / f.shape[1] / 2) * 2
            frames.append(cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA))
        i += 1
    parts = [(out, frames)] if split is None else [(out + "_a", frames[:split]), (out + "_b", frames[split:])]
    for name, fs in parts:
        os.makedirs(name, exist_ok=True)
        for k, f in enumerate(fs):
            cv2.imwrite(f"{name}/frame_{k + 1:04d}.png", f)
        print(name, len(fs), "frames")


def main():
    root, out = sys.argv[1], sys.argv[2]
    data = os.path.join(root, "usr/share/doc/opencv-doc/examples/data")
    video(os.path.join(data, "vtest.avi"), os.path.join(out, "vtest_rest"), 80, 3, 320)
    video(os.path.join(data, "Megamind.avi"), os.path.join(out, "megamind"), 0, 2, 320, split=68)
    photos = os.path.join(out, "people_photos")
    os.makedirs(photos, exist_ok=True)
    for k, name in enumerate(["basketball1.png", "basketball2.png", "messi5.jpg"]):
        f = cv2.resize(cv2.imread(os.path.join(data, name)), (320, 240), interpolation=cv2.INTER_AREA)
        cv2.imwrite(f"{photos}/frame_{k + 1:04d}.png", f)
    print(photos, 3, "frames")
    names = sorted(n for n in os.listdir(data) if n.endswith(".jpg") and "Logo" not in n
                   and not re.fullmatch(r"(left|right)[0-9]+\.jpg", n))
    photos = os.path.join(out, "photos")
    os.makedirs(photos, exist_ok=True)
    for k, name in enumerate(names):
        f = cv2.imread(os.path.join(data, name))
        h, w = f.shape[:2]
        cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        f = cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (320, 240), interpolation=cv2.INTER_AREA)
        cv2.imwrite(f"{photos}/frame_{k + 1:04d}.png", f)
    print(photos, len(names), "frames")


if __name__ == "__main__":
    main()
