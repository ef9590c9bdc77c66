//! Distillation of a dense head onto a frozen backbone: the student is a small head graph
//! attached at a tap of the backbone, trained to reproduce a teacher model's output map on
//! real frames, so that a task runs on the shared backbone instead of its own model.
//!
//! The steps, each a function:
//! 1. [`samples`]: every training frame (and its augmented copies, [`augment`]) through the
//!    backbone and the teacher, in the engine (full inference). The backbone's tap and the
//!    teacher's output, resampled onto the head's output grid through both models' frame maps
//!    ([`resample`]), are the inputs and targets; the backbone is frozen, so they are computed
//!    once and kept on disk ([`Samples::save`]).
//! 2. [`fit`]: the head (a [`Net`]) trained with AdamW on those pairs.
//! 3. [`evaluate`]: the trained head attached to the backbone, run by the engine on held-out
//!    clips, against the teacher at the teacher's own resolution (mask IoU).
//!
//! The teacher ([`Teacher`]) is a model's output map, or a bundle's box detector: a detector's
//! boxes become a map, 1 on the grid cells whose centre lies inside a box ([`box_mask`]), and
//! the head's map becomes boxes again as the bounding boxes of its connected regions
//! ([`mask_boxes`]), matched with the teacher's at IoU 0.5 ([`match_boxes`]).
//!
//! The head family ([`build_head`]): on one tap, a 3x3 convolution to `channels`; on several
//! (a coarse tap for context first, finer ones for detail after it), the context path's 3x3
//! convolution, a 1x1 to `channels / 2` resized to the finest tap, each detail tap's 1x1 to
//! `channels / 2`, all concatenated and mixed by a 3x3 convolution. Then per `upsample` step a
//! bilinear 2x resize and a 3x3 convolution, and a 1x1 convolution to the teacher's channels
//! with the teacher's last activation (a sigmoid for a probability mask). Every convolution
//! but the last has ReLU6.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use framecache::graph::{Activation, CoordMode, Graph, GraphBuilder, ResizeMode, Shape, Window};
use framecache::heads::{ssd, FrameMap, Head};
use framecache::model::Bundle;
use framecache::{Frame, Plan, Preprocess, Session, SessionOptions};
use safetensors::{Dtype, SafeTensors};

use crate::net::Net;
use crate::{Error, Result};

/// An RGB frame, 3 bytes per pixel.
#[derive(Clone, Debug)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Image {
    pub fn frame(&self) -> Frame<'_> {
        Frame::rgb(self.width, self.height, &self.data)
    }
}

/// A clip's frames, with its name (for reports and the split).
pub struct Clip {
    pub name: String,
    pub frames: Vec<Image>,
}

/// The head family; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeadSpec {
    pub channels: usize,
    pub upsample: usize,
}

/// A deterministic generator (SplitMix64): the same seed gives the same augmentations and
/// initial weights on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
}

/// The head of `spec` on taps of shapes `taps` (see the module documentation), ending in
/// `out_c` channels with `last`, its weights drawn He-uniform from `rng` (biases 0). Node `j`
/// is the input fed by tap `j`.
pub fn build_head(taps: &[Shape], out_c: usize, last: Activation, spec: HeadSpec, rng: &mut Rng) -> Result<Graph> {
    if spec.channels < 2 || out_c == 0 || taps.is_empty() {
        return Err(Error::Input(format!(
            "a head needs a tap ({}), channels ({}, at least 2) and outputs ({out_c})",
            taps.len(),
            spec.channels
        )));
    }
    let relu6 = Activation::Clip { min: 0.0, max: 6.0 };
    let conv3 = Window { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pad: [1; 4] };
    let conv1 = Window { kh: 1, kw: 1, pad: [0; 4], ..conv3 };
    let mut b = GraphBuilder::new(taps[0].h, taps[0].w, taps[0].c);
    for t in &taps[1..] {
        b.input(t.h, t.w, t.c)?;
    }
    // He-uniform weights of a layer with `fan_in` inputs (`n` of them), then zero biases.
    let init = |rng: &mut Rng, fan_in: usize, n: usize| {
        let bound = (6.0 / fan_in as f32).sqrt();
        let mut r = Rng::new(rng.next_u64());
        let mut k = 0;
        move || {
            k += 1;
            if k <= n {
                r.range(-bound, bound)
            } else {
                0.0
            }
        }
    };
    let (c, half) = (spec.channels, spec.channels / 2);
    let t0 = taps[0];
    let mut x = b.conv(0, c, conv3, 1, relu6, &mut init(rng, 9 * t0.c, 9 * t0.c * c))?;
    if taps.len() > 1 {
        let fine = taps[taps.len() - 1];
        let ctx = b.conv(x, half, conv1, 1, relu6, &mut init(rng, c, c * half))?;
        let mut parts = vec![b.resize(ctx, fine.h, fine.w, ResizeMode::Linear, CoordMode::HalfPixel)?];
        for (j, t) in taps.iter().enumerate().skip(1) {
            let d = b.conv(j, half, conv1, 1, relu6, &mut init(rng, t.c, t.c * half))?;
            parts.push(if (t.h, t.w) == (fine.h, fine.w) {
                d
            } else {
                b.resize(d, fine.h, fine.w, ResizeMode::Linear, CoordMode::HalfPixel)?
            });
        }
        let cat = b.concat(&parts)?;
        let cc = b.shape(cat).c;
        x = b.conv(cat, half, conv3, 1, relu6, &mut init(rng, 9 * cc, 9 * cc * half))?;
    }
    for _ in 0..spec.upsample {
        let s = b.shape(x);
        x = b.resize(x, s.h * 2, s.w * 2, ResizeMode::Linear, CoordMode::HalfPixel)?;
        x = b.conv(x, s.c, conv3, 1, relu6, &mut init(rng, 9 * s.c, 9 * s.c * s.c))?;
    }
    let xc = b.shape(x).c;
    let y = b.conv(x, out_c, conv1, 1, last, &mut init(rng, xc, xc * out_c))?;
    b.output(y);
    let mut g = b.build();
    // Stable node names, so that a head's file reads the same every time.
    for (i, node) in g.nodes.iter_mut().enumerate() {
        node.name = if i < taps.len() { format!("tap.{i}") } else { format!("head.{i}") };
    }
    g.tensors = g.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    g.input_name = "tap.0".into();
    g.outputs[0].name = "mask".into();
    Ok(g)
}

/// `src` (an NHWC map of `src_shape`, seen through `src_map` of a frame) sampled bilinearly at
/// the pixel centres of a `dst_h x dst_w` grid seen through `dst_map` of the same frame. Also
/// returns, per destination pixel, 1 where it lies inside what `src` sees and 0 elsewhere.
pub fn resample(
    src: &[f32],
    src_shape: Shape,
    src_map: &FrameMap,
    dst_h: usize,
    dst_w: usize,
    dst_map: &FrameMap,
) -> (Vec<f32>, Vec<f32>) {
    let c = src_shape.c;
    let mut out = vec![0.0; dst_h * dst_w * c];
    let mut valid = vec![0.0; dst_h * dst_w];
    for y in 0..dst_h {
        for x in 0..dst_w {
            let [fx, fy] = dst_map.point((x as f32 + 0.5) / dst_w as f32, (y as f32 + 0.5) / dst_h as f32);
            let (u, v) = ((fx - src_map.x0) / src_map.w, (fy - src_map.y0) / src_map.h);
            if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
                continue;
            }
            valid[y * dst_w + x] = 1.0;
            let sx = (u * src_shape.w as f32 - 0.5).clamp(0.0, (src_shape.w - 1) as f32);
            let sy = (v * src_shape.h as f32 - 0.5).clamp(0.0, (src_shape.h - 1) as f32);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(src_shape.w - 1), (y0 + 1).min(src_shape.h - 1));
            let (ax, ay) = (sx - x0 as f32, sy - y0 as f32);
            for k in 0..c {
                let at = |yy: usize, xx: usize| src[(yy * src_shape.w + xx) * c + k];
                let top = at(y0, x0) * (1.0 - ax) + at(y0, x1) * ax;
                let bottom = at(y1, x0) * (1.0 - ax) + at(y1, x1) * ax;
                out[(y * dst_w + x) * c + k] = top * (1.0 - ay) + bottom * ay;
            }
        }
    }
    (out, valid)
}

/// An augmented copy of `img`: a random crop of 60–100% of each side (both models then see
/// only the crop), a horizontal flip half the time, and brightness and contrast jitter of up
/// to ±20%.
pub fn augment(img: &Image, rng: &mut Rng) -> Image {
    let s = rng.range(0.6, 1.0);
    let (cw, ch) = (((img.width as f32 * s) as usize).max(8), ((img.height as f32 * s) as usize).max(8));
    let (cw, ch) = (cw.min(img.width), ch.min(img.height));
    let x0 = (rng.uniform() * (img.width - cw + 1) as f32) as usize;
    let y0 = (rng.uniform() * (img.height - ch + 1) as f32) as usize;
    let flip = rng.uniform() < 0.5;
    let contrast = rng.range(0.8, 1.2);
    let brightness = rng.range(-0.2, 0.2) * 255.0;
    let mut data = Vec::with_capacity(cw * ch * 3);
    for y in 0..ch {
        for x in 0..cw {
            let sx = if flip { x0 + cw - 1 - x } else { x0 + x };
            let p = ((y0 + y) * img.width + sx) * 3;
            for k in 0..3 {
                let v = (img.data[p + k] as f32 - 128.0) * contrast + 128.0 + brightness;
                data.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Image { width: cw, height: ch, data }
}

/// Training pairs: backbone tap features (NCHW, one set per tap) and teacher targets on the
/// head's output grid, with a validity weight per target pixel.
pub struct Samples {
    pub n: usize,
    /// Per tap, `[c, h, w]` of one sample's features.
    pub feature_shapes: Vec<[usize; 3]>,
    /// `[c, h, w]` of one sample's targets.
    pub target_shape: [usize; 3],
    /// Per tap, every sample's features.
    pub features: Vec<Vec<f32>>,
    pub targets: Vec<f32>,
    /// `[h, w]` per sample.
    pub weights: Vec<f32>,
}

/// What the head learns to reproduce.
pub enum Teacher {
    /// Node `node` of a model's plan: a map, sampled onto the head's grid through both models'
    /// frame maps ([`resample`]).
    Map { plan: std::sync::Arc<Plan>, node: usize },
    /// The boxes of detector head `head` of backbone `backbone` of a bundle: 1 on the head's
    /// grid cells whose centre lies inside a box, 0 elsewhere ([`box_mask`]). Only that
    /// backbone runs.
    Boxes { bundle: std::sync::Arc<Bundle>, backbone: usize, head: usize },
}

/// What a teacher gives for one frame on the head's grid ([`Teacher::target`]).
struct Target {
    values: Vec<f32>,
    /// Per cell, 1 where the teacher sees it, else 0.
    valid: Vec<f32>,
    /// A box teacher's boxes, in frame pixels.
    boxes: Vec<[f32; 4]>,
}

impl Teacher {
    /// Channels of the targets.
    pub fn channels(&self) -> usize {
        match self {
            Teacher::Map { plan, node } => plan.graph().nodes[*node].shape.c,
            Teacher::Boxes { .. } => 1,
        }
    }

    /// The plan that computes the teacher's output (for a box head, its backbone's).
    pub fn plan(&self) -> &std::sync::Arc<Plan> {
        match self {
            Teacher::Map { plan, .. } => plan,
            Teacher::Boxes { bundle, backbone, .. } => &bundle.backbones[*backbone].plan,
        }
    }

    /// A session of [`Teacher::plan`].
    fn start(&self) -> Result<Session> {
        Ok(Session::new(self.plan().clone(), SessionOptions::default())?)
    }

    /// Runs the teacher on `img` in `s` (from [`Teacher::start`]) and returns its target on a
    /// `gh x gw` grid seen through `grid_map` of the frame, with a validity weight per cell,
    /// and for a box teacher its boxes (frame pixels).
    fn target(&self, s: &mut Session, img: &Image, (gh, gw): (usize, usize), grid_map: &FrameMap) -> Result<Target> {
        match self {
            Teacher::Map { plan, node } => {
                s.run_full(img.frame())?;
                let tmap = plan.frame_map(img.width, img.height);
                let shape = plan.graph().nodes[*node].shape;
                let (values, valid) = resample(s.activation(*node), shape, &tmap, gh, gw, grid_map);
                Ok(Target { values, valid, boxes: Vec::new() })
            }
            Teacher::Boxes { bundle, backbone, head } => {
                let outputs = s.run_full(img.frame())?;
                let b = &bundle.backbones[*backbone];
                let boxes: Vec<[f32; 4]> = match b.decode(*head, &outputs, &b.plan.frame_map(img.width, img.height)) {
                    Head::Detections { detections, .. } => detections.into_iter().map(|d| d.bbox).collect(),
                    _ => {
                        let name = &b.heads[*head].name;
                        return Err(Error::Input(format!("the teacher's head '{name}' gives no boxes")));
                    }
                };
                let (values, valid) = box_mask(&boxes, gh, gw, grid_map, img.width, img.height);
                Ok(Target { values, valid, boxes })
            }
        }
    }
}

/// `boxes` (frame pixels: xmin, ymin, xmax, ymax) on an `h x w` grid seen through `map` of a
/// `frame_w x frame_h` frame: 1 where a cell's centre lies inside a box, else 0; and 1 per
/// cell whose centre lies inside the frame (what the boxes can speak for), else 0.
pub fn box_mask(
    boxes: &[[f32; 4]],
    h: usize,
    w: usize,
    map: &FrameMap,
    frame_w: usize,
    frame_h: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (mut mask, mut valid) = (vec![0.0; h * w], vec![0.0; h * w]);
    for y in 0..h {
        for x in 0..w {
            let [fx, fy] = map.point((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
            if (0.0..=frame_w as f32).contains(&fx) && (0.0..=frame_h as f32).contains(&fy) {
                valid[y * w + x] = 1.0;
            }
            if boxes.iter().any(|b| (b[0]..=b[2]).contains(&fx) && (b[1]..=b[3]).contains(&fy)) {
                mask[y * w + x] = 1.0;
            }
        }
    }
    (mask, valid)
}

/// The bounding boxes (frame pixels, through `map`) of the 4-connected regions of an `h x w`
/// map (one channel) at or above 0.5.
pub fn mask_boxes(map_values: &[f32], h: usize, w: usize, map: &FrameMap) -> Vec<[f32; 4]> {
    let mut seen = vec![false; h * w];
    let mut boxes = Vec::new();
    for start in 0..h * w {
        if seen[start] || map_values[start] < 0.5 {
            continue;
        }
        seen[start] = true;
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let mut stack = vec![start];
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            let neighbours = [
                (x > 0).then(|| p - 1),
                (x + 1 < w).then(|| p + 1),
                (y > 0).then(|| p - w),
                (y + 1 < h).then(|| p + w),
            ];
            for q in neighbours.into_iter().flatten() {
                if !seen[q] && map_values[q] >= 0.5 {
                    seen[q] = true;
                    stack.push(q);
                }
            }
        }
        let [ax, ay] = map.point(x0 as f32 / w as f32, y0 as f32 / h as f32);
        let [bx, by] = map.point((x1 + 1) as f32 / w as f32, (y1 + 1) as f32 / h as f32);
        boxes.push([ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)]);
    }
    boxes
}

/// How many of `found` match a box of `truth` one to one at IoU ≥ 0.5 (pairs taken by
/// decreasing IoU).
pub fn match_boxes(found: &[[f32; 4]], truth: &[[f32; 4]]) -> usize {
    let mut pairs: Vec<(f32, usize, usize)> = found
        .iter()
        .enumerate()
        .flat_map(|(i, a)| truth.iter().enumerate().map(move |(j, b)| (ssd::iou(a, b), i, j)))
        .filter(|&(iou, _, _)| iou >= 0.5)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_f, mut used_t) = (vec![false; found.len()], vec![false; truth.len()]);
    let mut matched = 0;
    for (_, i, j) in pairs {
        if !used_f[i] && !used_t[j] {
            (used_f[i], used_t[j]) = (true, true);
            matched += 1;
        }
    }
    matched
}

/// The backbone and the teacher as the distillation runs them.
pub struct Models {
    /// The backbone, and the nodes of its taps.
    pub backbone: std::sync::Arc<Plan>,
    pub taps: Vec<usize>,
    pub teacher: Teacher,
    /// The head's output grid `(h, w)`.
    pub grid: (usize, usize),
}

fn nhwc_to_nchw(v: &[f32], s: Shape) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for p in 0..s.pixels() {
        for k in 0..s.c {
            out[k * s.pixels() + p] = v[p * s.c + k];
        }
    }
    out
}

/// The pairs for `frames` (each also in `copies` augmented versions, drawn from `rng`).
pub fn samples(models: &Models, frames: &[&Image], copies: usize, rng: &mut Rng) -> Result<Samples> {
    let mut backbone = Session::new(models.backbone.clone(), SessionOptions::default())?;
    let mut teacher = models.teacher.start()?;
    let fs: Vec<Shape> = models.taps.iter().map(|&t| models.backbone.graph().nodes[t].shape).collect();
    let c = models.teacher.channels();
    let (gh, gw) = models.grid;
    let mut out = Samples {
        n: 0,
        feature_shapes: fs.iter().map(|s| [s.c, s.h, s.w]).collect(),
        target_shape: [c, gh, gw],
        features: vec![Vec::new(); fs.len()],
        targets: Vec::new(),
        weights: Vec::new(),
    };
    for img in frames {
        let mut variants = vec![(*img).clone()];
        variants.extend((0..copies).map(|_| augment(img, rng)));
        for v in &variants {
            backbone.run_full(v.frame())?;
            let bmap = models.backbone.frame_map(v.width, v.height);
            let Target { values: t, valid: w, .. } = models.teacher.target(&mut teacher, v, models.grid, &bmap)?;
            for (k, (&tap, &s)) in models.taps.iter().zip(&fs).enumerate() {
                out.features[k].extend(nhwc_to_nchw(backbone.activation(tap), s));
            }
            out.targets.extend(nhwc_to_nchw(&t, Shape::new(gh, gw, c)));
            out.weights.extend(w);
            out.n += 1;
        }
    }
    Ok(out)
}

impl Samples {
    const KEY: &'static str = "framecache.distill.samples";

    /// Writes the pairs to `path` (safetensors; `key` identifies what they were computed from).
    pub fn save(&self, path: &Path, key: &str) -> Result<()> {
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let f: Vec<Vec<u8>> = self.features.iter().map(|f| bytes(f)).collect();
        let (t, w) = (bytes(&self.targets), bytes(&self.weights));
        let [tc, th, tw] = self.target_shape;
        fn view(d: &[u8], s: Vec<usize>) -> Result<safetensors::tensor::TensorView<'_>> {
            safetensors::tensor::TensorView::new(Dtype::F32, s, d).map_err(to_input)
        }
        let mut views = vec![
            ("targets".to_string(), view(&t, vec![self.n, tc, th, tw])?),
            ("weights".to_string(), view(&w, vec![self.n, th, tw])?),
        ];
        for (k, (f, &[c, h, w])) in f.iter().zip(&self.feature_shapes).enumerate() {
            views.push((format!("features.{k}"), view(f, vec![self.n, c, h, w])?));
        }
        let data = safetensors::serialize(views, Some(HashMap::from([(Self::KEY.to_string(), key.to_string())])))
            .map_err(to_input)?;
        framecache::files::write_atomic(path, &data).map_err(|source| Error::Io { path: path.into(), source })
    }

    /// The pairs at `path` if they were computed from `key`.
    pub fn load(path: &Path, key: &str) -> Option<Self> {
        let data = std::fs::read(path).ok()?;
        let (_, meta) = SafeTensors::read_metadata(&data).ok()?;
        if meta.metadata().as_ref()?.get(Self::KEY)? != key {
            return None;
        }
        let st = SafeTensors::deserialize(&data).ok()?;
        let read = |name: &str| -> Option<(Vec<usize>, Vec<f32>)> {
            let t = st.tensor(name).ok()?;
            let v = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            Some((t.shape().to_vec(), v))
        };
        let (ts, targets) = read("targets")?;
        let (_, weights) = read("weights")?;
        let (mut feature_shapes, mut features) = (Vec::new(), Vec::new());
        while let Some((s, f)) = read(&format!("features.{}", features.len())) {
            feature_shapes.push([s[1], s[2], s[3]]);
            features.push(f);
        }
        Some(Self { n: ts[0], feature_shapes, target_shape: [ts[1], ts[2], ts[3]], features, targets, weights })
    }

    /// The feeds (one per tap, as node `k`) and the targets and weights of samples `ids`.
    fn batch(&self, ids: &[usize], device: &Device) -> Result<Batch> {
        let per = |s: [usize; 3]| s[0] * s[1] * s[2];
        let tl = per(self.target_shape);
        let wl = self.target_shape[1] * self.target_shape[2];
        let pick =
            |v: &[f32], len: usize| ids.iter().flat_map(|&i| v[i * len..(i + 1) * len].iter().copied()).collect();
        let [tc, th, tw] = self.target_shape;
        let n = ids.len();
        let feeds = self
            .features
            .iter()
            .zip(&self.feature_shapes)
            .enumerate()
            .map(|(k, (f, &[c, h, w]))| Ok((k, Tensor::from_vec(pick(f, c * h * w), (n, c, h, w), device)?)))
            .collect::<Result<_>>()?;
        Ok((
            feeds,
            Tensor::from_vec(pick(&self.targets, tl), (n, tc, th, tw), device)?,
            Tensor::from_vec(pick(&self.weights, wl), (n, 1, th, tw), device)?,
        ))
    }
}

/// A batch: the feeds (node, features) and the targets and weights.
type Batch = (Vec<(usize, Tensor)>, Tensor, Tensor);

fn to_input(e: impl std::fmt::Display) -> Error {
    Error::Input(e.to_string())
}

/// How [`fit`] trains.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct FitOptions {
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

/// The loss of a batch: for a probability output (`probabilities`), binary cross-entropy
/// against the teacher's soft probabilities plus a soft Dice term over the batch (the masks
/// cover a few percent of the frame, and Dice weighs the person pixels as much as the rest);
/// otherwise the mean squared error. Pixels outside what the teacher sees weigh 0.
pub fn loss(pred: &Tensor, target: &Tensor, weight: &Tensor, probabilities: bool) -> Result<Tensor> {
    let total = (weight.sum_all()? * pred.dim(1)? as f64)?.affine(1.0, 1e-6)?;
    if !probabilities {
        let se = (pred - target)?.sqr()?.broadcast_mul(weight)?.sum_all()?;
        return Ok((se / total)?);
    }
    let p = pred.clamp(1e-6f32, 1.0 - 1e-6)?;
    let bce = ((target * p.log()?)? + (target.affine(-1.0, 1.0)? * p.affine(-1.0, 1.0)?.log()?)?)?;
    let bce = (bce.broadcast_mul(weight)?.sum_all()?.neg()? / &total)?;
    let inter = (&p * target)?.broadcast_mul(weight)?.sum_all()?;
    let sizes = (p.broadcast_mul(weight)?.sum_all()? + target.broadcast_mul(weight)?.sum_all()?)?;
    let dice = (inter.affine(2.0, 1.0)? / sizes.affine(1.0, 1.0)?)?.affine(-1.0, 1.0)?;
    Ok((bce + dice)?)
}

/// Trains every weight of `net` (a head) on `samples` with AdamW, in shuffled batches; calls
/// `progress(epoch, batch, batches, loss)` after each batch and returns each epoch's mean loss.
pub fn fit(
    net: &Net,
    samples: &Samples,
    options: &FitOptions,
    mut progress: impl FnMut(usize, usize, usize, f32),
) -> Result<Vec<f32>> {
    if samples.n == 0 {
        return Err(Error::Input("no training samples".into()));
    }
    let out = net.graph().outputs.first().ok_or_else(|| Error::Input("the head has no output".into()))?.node;
    let probabilities = net.graph().nodes[out].op.activation() == Activation::Sigmoid;
    let params = ParamsAdamW { lr: options.learning_rate, weight_decay: options.weight_decay, ..Default::default() };
    let mut opt = AdamW::new(net.vars(|_, _| true), params)?;
    let mut rng = Rng::new(options.seed);
    let batch = options.batch.max(1);
    let batches = samples.n.div_ceil(batch);
    let mut curve = Vec::with_capacity(options.epochs);
    for epoch in 0..options.epochs {
        // Fisher–Yates.
        let mut order: Vec<usize> = (0..samples.n).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut sum = 0.0;
        for (k, ids) in order.chunks(batch).enumerate() {
            let (feeds, t, w) = samples.batch(ids, net.device())?;
            let y = net.forward(&feeds, &[out])?.remove(0);
            let l = loss(&y, &t, &w, probabilities)?;
            opt.backward_step(&l)?;
            let l = l.to_scalar::<f32>()?;
            sum += l;
            progress(epoch, k, batches, l);
        }
        curve.push(sum / batches as f32);
    }
    Ok(curve)
}

/// The held-out figures of a head against its teacher on one clip.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClipMetrics {
    pub clip: String,
    pub frames: usize,
    /// Frames where the teacher's mask (probability ≥ 0.5) covers at least 1% of its map.
    pub frames_with_mask: usize,
    /// Mean mask IoU over those frames (`None` when there are none).
    pub mean_iou: Option<f64>,
    /// The same for the teacher's own mask sampled onto the head's grid and back: what a
    /// head that reproduced the teacher perfectly at its resolution would score (a map
    /// teacher only).
    pub grid_ceiling_iou: Option<f64>,
    /// Teacher and student mask cover, averaged over all frames.
    pub teacher_cover: f64,
    pub student_cover: f64,
    /// A box teacher: the boxes over all frames.
    pub boxes: Option<BoxCounts>,
}

/// Boxes of a box teacher and of the head over a clip.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct BoxCounts {
    pub teacher: usize,
    /// The head's boxes ([`mask_boxes`]).
    pub student: usize,
    /// The head's boxes that match a teacher's box at IoU ≥ 0.5, one to one ([`match_boxes`]).
    pub matched: usize,
    /// What the head's grid allows: the boxes of the teacher's own mask on that grid that
    /// match a teacher's box.
    pub grid_matched: usize,
}

/// Runs `student` (the backbone with the head attached; `output` its node) and the teacher on
/// every frame of `clip` in the engine and compares them: a map teacher's mask at its own
/// resolution with the student's resampled onto it through both frame maps; a box teacher's
/// boxes, as a mask on the student's grid and as boxes.
pub fn evaluate(student: &std::sync::Arc<Plan>, output: usize, models: &Models, clip: &Clip) -> Result<ClipMetrics> {
    let mut s = Session::new(student.clone(), SessionOptions::default())?;
    let mut t = models.teacher.start()?;
    let ss = student.graph().nodes[output].shape;
    let (mut ious, mut ceiling, mut tc, mut sc) = (Vec::new(), Vec::new(), 0.0, 0.0);
    let mut counts = BoxCounts::default();
    for img in &clip.frames {
        s.run_full(img.frame())?;
        let smap = student.frame_map(img.width, img.height);
        let pred = s.activation(output);
        let (iou, t_on, s_on, px) = match &models.teacher {
            Teacher::Map { plan, node } => {
                t.run_full(img.frame())?;
                let ts = plan.graph().nodes[*node].shape;
                let tmap = plan.frame_map(img.width, img.height);
                let (pred, valid) = resample(pred, ss, &smap, ts.h, ts.w, &tmap);
                let teacher = t.activation(*node);
                let (coarse, _) = resample(teacher, ts, &tmap, ss.h, ss.w, &smap);
                let (round_trip, _) = resample(&coarse, Shape::new(ss.h, ss.w, ts.c), &smap, ts.h, ts.w, &tmap);
                let (iou, t_on, s_on) = mask_iou(teacher, &pred, &valid, ts.c);
                let (best, _, _) = mask_iou(teacher, &round_trip, &valid, ts.c);
                if t_on as f64 >= 0.01 * ts.pixels() as f64 {
                    ceiling.push(best);
                }
                (iou, t_on, s_on, ts.pixels())
            }
            Teacher::Boxes { .. } => {
                let Target { values: mask, valid, boxes } = models.teacher.target(&mut t, img, (ss.h, ss.w), &smap)?;
                let (iou, t_on, s_on) = mask_iou(&mask, pred, &valid, 1);
                let found = mask_boxes(pred, ss.h, ss.w, &smap);
                counts.teacher += boxes.len();
                counts.student += found.len();
                counts.matched += match_boxes(&found, &boxes);
                counts.grid_matched += match_boxes(&mask_boxes(&mask, ss.h, ss.w, &smap), &boxes);
                (iou, t_on, s_on, ss.pixels())
            }
        };
        tc += t_on as f64 / px as f64;
        sc += s_on as f64 / px as f64;
        if t_on as f64 >= 0.01 * px as f64 {
            ious.push(iou);
        }
    }
    let n = clip.frames.len().max(1) as f64;
    Ok(ClipMetrics {
        clip: clip.name.clone(),
        frames: clip.frames.len(),
        frames_with_mask: ious.len(),
        mean_iou: mean(&ious),
        grid_ceiling_iou: mean(&ceiling),
        teacher_cover: tc / n,
        student_cover: sc / n,
        boxes: matches!(models.teacher, Teacher::Boxes { .. }).then_some(counts),
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// IoU of the masks (channel 0 at probability 0.5) of `teacher` and `pred` (where `valid`),
/// and the pixels each covers.
fn mask_iou(teacher: &[f32], pred: &[f32], valid: &[f32], c: usize) -> (f64, usize, usize) {
    let (mut inter, mut union, mut t_on, mut s_on) = (0usize, 0usize, 0usize, 0usize);
    for p in 0..valid.len() {
        let a = teacher[p * c] >= 0.5;
        let b = valid[p] > 0.0 && pred[p * c] >= 0.5;
        inter += (a && b) as usize;
        union += (a || b) as usize;
        t_on += a as usize;
        s_on += b as usize;
    }
    (inter as f64 / union.max(1) as f64, t_on, s_on)
}

/// The backbone `graph` (imported, with `preprocess`) with `head` attached at nodes `taps`,
/// and the head's output node.
pub fn attach(
    mut graph: Graph,
    preprocess: Preprocess,
    head: Graph,
    taps: &[usize],
) -> Result<(std::sync::Arc<Plan>, usize)> {
    if head.inputs() != taps.len() {
        return Err(Error::Input(format!("the head reads {} inputs, {} taps feed it", head.inputs(), taps.len())));
    }
    for (j, &t) in taps.iter().enumerate() {
        let (want, got) = (head.nodes[j].shape, graph.nodes[t].shape);
        if want != got {
            return Err(Error::Input(format!("the head's input {j} is {want}, its tap is {got}")));
        }
    }
    let k = graph.attach(head, taps)[0];
    let node = graph.outputs[k].node;
    Ok((Plan::new(graph, preprocess)?, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid over the whole of a `w x h` frame.
    fn whole(w: usize, h: usize) -> FrameMap {
        FrameMap { x0: 0.0, y0: 0.0, w: w as f32, h: h as f32 }
    }

    #[test]
    fn boxes_become_a_mask_and_back() {
        // A 100x80 frame on a 20x16 grid: cells of 5x5 pixels.
        let map = whole(100, 80);
        let boxes = [[10.0, 10.0, 40.0, 30.0], [60.0, 50.0, 90.0, 75.0]];
        let (mask, valid) = box_mask(&boxes, 16, 20, &map, 100, 80);
        assert!(valid.iter().all(|&v| v == 1.0));
        // Cells whose centre (2.5 + 5k) lies in [10, 40] x [10, 30]: columns 2..=7, rows 2..=5.
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), 6 * 4 + 6 * 5);
        let found = mask_boxes(&mask, 16, 20, &map);
        assert_eq!(found.len(), 2);
        for (f, b) in found.iter().zip(&boxes) {
            assert!(f.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3), "{f:?} for {b:?}");
        }
        assert_eq!(match_boxes(&found, &boxes), 2);
        // A box the grid cannot see whole still matches where it overlaps enough.
        let shifted = [[12.0, 11.0, 41.0, 31.0]];
        assert_eq!(match_boxes(&found, &shifted), 1);
    }

    #[test]
    fn regions_touching_at_a_corner_are_two_boxes() {
        let map = whole(4, 4);
        #[rustfmt::skip]
        let mask = [
            1.0, 0.0, 0.0, 0.0,
            0.0, 1.0, 1.0, 0.0,
            0.0, 1.0, 0.9, 0.0,
            0.0, 0.0, 0.0, 0.4,
        ];
        let found = mask_boxes(&mask, 4, 4, &map);
        assert_eq!(found, vec![[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0]]);
    }

    #[test]
    fn boxes_match_one_to_one_at_half_overlap() {
        let a = [0.0, 0.0, 10.0, 10.0];
        // IoU 50/150 = 1/3: no match.
        assert_eq!(match_boxes(&[[5.0, 0.0, 15.0, 10.0]], &[a]), 0);
        // Two found boxes on one true box: one match.
        assert_eq!(match_boxes(&[a, [0.0, 0.0, 10.0, 9.0]], &[a]), 1);
        // The best pairs are taken first: each found box gets its own true box.
        let b = [0.0, 0.0, 10.0, 8.0];
        assert_eq!(match_boxes(&[b, a], &[a, b]), 2);
        assert_eq!(match_boxes(&[], &[a]), 0);
    }
}
