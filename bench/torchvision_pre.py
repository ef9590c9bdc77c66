"""What the Python scripts in bench/ share: the torchvision preprocessing of the ImageNet
classifiers (Pillow's bilinear Resize(256) of the shorter side, then CenterCrop(224), and each
model's normalisation: the values of its sidecar in assets/models), and the reference top-1
tables of ../shared/data/reference."""
import os

from PIL import Image

MODELS = {
    "mobilenet_v2": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "efficientnet_lite0": ([127 / 255] * 3, [128 / 255] * 3),
}


def torchvision(im, short=256, crop=224):
    w, h = im.size
    nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    r = im.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    return r.crop((left, top, left + crop, top + crop))


def reference_top1(data, clip, model):
    """Frame file name -> reference top-1 class of `model` on dev clip `clip`, or None when the
    clip has no reference table."""
    table = os.path.join(data, "reference", f"dev__{clip}.top5.tsv")
    if not os.path.exists(table):
        return None
    lines = open(table).read().splitlines()
    col = lines[0].split("\t").index(model + "_top5")
    return {l.split("\t")[0]: int(l.split("\t")[col].split()[0]) for l in lines[1:]}
