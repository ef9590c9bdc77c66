//! Multi-task bundles: one or more backbones, each computed once per frame with the frame
//! cache and read by several heads.
//!
//! A bundle is a TOML manifest beside (or naming) ONNX files:
//!
//! ```toml
//! name = "BlazePose"
//!
//! [[backbone]]
//! model = "pose_landmark_full.onnx"  # relative to the manifest, then the search folders
//! taps = ["t273_..."]                 # optional: where the shared body ends
//! [backbone.preprocess]
//! fit = "stretch"
//! aspect = "turn"                     # optional: fixed | turn | follow (see `Aspect`)
//!
//! [[backbone.head]]
//! name = "landmarks"
//! decoder = "keypoints"               # classify | segment | detect_ssd | detect_grid | keypoints | raw
//! outputs = ["Identity", "Identity_1"]
//! keypoints = 39
//! values = 5
//! visibility = 3
//! rate = 1                            # every frame; 4 = every 4th frame
//! ```
//!
//! Heads are cut from the backbone's own ONNX graph: a head owns the nodes that only it needs,
//! and the backbone is everything the taps need plus whatever several heads share (so
//! without `taps` the shared part is found automatically). A head may instead come from its
//! own ONNX file (`model = "head.onnx"`, `input = "tap tensor"`), whose single input is fed by
//! that tap. Spatial head nodes reuse the cache like the backbone; global ones (pool, dense)
//! recompute only when their input changed.

pub mod file;
mod manifest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use manifest::{BackboneManifest, HeadManifest, Manifest};

use crate::error::{Error, Result};
use crate::exec::{HeadPart, Output, Plan, Session, SessionOptions, WorkerPool};
use crate::frame::Image;
use crate::graph::{Node, Op};
use crate::heads::{Decoder, FrameMap, Head};
use crate::stats::HeadStatus;

/// A loaded bundle: its backbones, each compiled with its heads.
#[derive(Debug)]
pub struct Bundle {
    pub name: String,
    /// The manifest it was read from.
    pub path: PathBuf,
    pub backbones: Vec<Backbone>,
}

/// One backbone of a bundle and its heads (in `plan.heads()` order). Backbones whose models
/// see the same input geometry are merged into one: one resample, one change detection and one
/// session for all of them (each model still has its own nodes and cache).
#[derive(Debug)]
pub struct Backbone {
    /// The first model file of the group.
    pub model: PathBuf,
    /// Every model file in this backbone (more than one when models were merged).
    pub models: Vec<PathBuf>,
    pub plan: Arc<Plan>,
    pub heads: Vec<HeadDef>,
}

impl Backbone {
    /// Head `k`'s result from `outputs` (all of this backbone's plan outputs, as
    /// [`Session::run_full`] or [`Session::process`] gives them) of a frame mapped by `map`.
    pub fn decode(&self, k: usize, outputs: &[Output], map: &FrameMap) -> Head {
        let mine: Vec<&Output> = self.plan.heads()[k].outputs.iter().map(|&o| &outputs[o]).collect();
        self.heads[k].decoder.decode(&mine, map)
    }

    /// The model file names, joined with " + ".
    pub fn name(&self) -> String {
        let names: Vec<String> =
            self.models.iter().map(|m| m.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
        names.join(" + ")
    }
}

/// Merges backbones whose models take the same input size and fit: the later ones are attached
/// to the first one's input (through a per-channel affine node when their normalisation
/// differs), so frame preprocessing and change detection run once for the group. The split of
/// every model into backbone and heads is kept.
fn merge_same_geometry(backbones: Vec<Backbone>) -> Result<Vec<Backbone>> {
    let mut groups: Vec<Vec<Backbone>> = Vec::new();
    for b in backbones {
        let key = |x: &Backbone| (x.plan.graph().input_shape(), x.plan.preprocess().fit, x.plan.preprocess().aspect);
        match groups.iter_mut().find(|g| key(&g[0]) == key(&b)) {
            Some(g) => g.push(b),
            None => groups.push(vec![b]),
        }
    }
    groups.into_iter().map(merge_group).collect()
}

fn merge_group(mut group: Vec<Backbone>) -> Result<Backbone> {
    if group.len() == 1 {
        return Ok(group.remove(0));
    }
    let first = &group[0];
    let pre = first.plan.preprocess().clone();
    let mut graph = first.plan.graph().clone();
    let backbone_nodes = |p: &Plan| (0..p.graph().nodes.len()).filter(|&i| p.part(i).is_none()).collect::<Vec<_>>();
    let mut taps = backbone_nodes(&first.plan);
    let fresh = |h: &HeadPart| HeadPart { nodes: Vec::new(), reads: Vec::new(), ..h.clone() };
    let mut parts: Vec<HeadPart> = first.plan.heads().iter().map(fresh).collect();
    let mut heads = Vec::new();
    let mut models = Vec::new();
    for (k, b) in group.iter().enumerate() {
        models.extend(b.models.iter().cloned());
        heads.extend(b.heads.iter().cloned());
        if k == 0 {
            continue;
        }
        let other = b.plan.preprocess();
        let input = graph.input_shape();
        let at = if (other.mean, other.std) == (pre.mean, pre.std) {
            0
        } else {
            // x_b = (p - m_b) / s_b = x_a * s_a / s_b + (m_a - m_b) / s_b, per channel.
            let scale = (0..3).map(|c| pre.std[c] / other.std[c]).collect();
            let bias = (0..3).map(|c| (pre.mean[c] - other.mean[c]) / other.std[c]).collect();
            graph.nodes.push(Node {
                name: format!("normalize for {}", b.name()),
                op: Op::ChannelAffine { scale, bias },
                inputs: vec![0],
                shape: input,
            });
            graph.nodes.len() - 1
        };
        let offset = graph.nodes.len() - 1;
        let map = |j: usize| if j == 0 { at } else { j + offset };
        let outputs = graph.attach(b.plan.graph().clone(), &[at]);
        taps.extend(backbone_nodes(&b.plan).into_iter().map(map));
        parts.extend(
            b.plan
                .heads()
                .iter()
                .map(|h| HeadPart { outputs: h.outputs.iter().map(|&o| outputs[o]).collect(), ..fresh(h) }),
        );
    }
    taps.sort_unstable();
    taps.dedup();
    let plan = Plan::with_heads(graph, pre, parts, &taps)?;
    Ok(Backbone { model: models[0].clone(), models, plan, heads })
}

/// A head's decoder and whether it starts enabled.
#[derive(Clone, Debug)]
pub struct HeadDef {
    pub name: String,
    pub decoder: Decoder,
    pub enabled: bool,
}

impl Bundle {
    /// Reads a manifest and compiles every backbone. Model files are looked up relative to
    /// the manifest, then in each of `dirs`. A bundle file ([`file`], `framecache compile
    /// --bundle`) holds its manifest and every file it names.
    pub fn load(path: impl AsRef<Path>, dirs: &[PathBuf]) -> Result<Arc<Self>> {
        let path = path.as_ref();
        let bytes = crate::files::read(path, crate::files::MAX_MODEL_BYTES)
            .map_err(|e| manifest::file_error(path, "cannot read", Some(e.into())))?;
        let archive;
        let (manifest, files) = if file::is_bundle_file(&bytes) {
            let (text, entries) = file::load(&bytes, path)?;
            archive = entries;
            (Manifest::parse(&text, path)?, manifest::Files::Archive(&archive))
        } else {
            if bytes.len() as u64 > crate::files::MAX_TEXT_BYTES {
                let reason = format!(
                    "{} bytes: neither a bundle file nor a manifest (at most {} bytes)",
                    bytes.len(),
                    crate::files::MAX_TEXT_BYTES
                );
                return Err(manifest::file_error(path, reason, None));
            }
            let text = String::from_utf8(bytes)
                .map_err(|e| manifest::file_error(path, "neither a bundle file nor UTF-8 text", Some(e.into())))?;
            (Manifest::parse(&text, path)?, manifest::Files::Disk { manifest: path, dirs })
        };
        let backbones = manifest::same_model_groups(&files, &manifest.backbones)
            .iter()
            .map(|group| manifest::compile(path, &files, group))
            .collect::<Result<Vec<_>>>()?;
        let backbones = merge_same_geometry(backbones)?;
        let name =
            manifest.name.clone().unwrap_or_else(|| path.file_stem().unwrap_or_default().to_string_lossy().into());
        Ok(Arc::new(Self { name, path: path.to_owned(), backbones }))
    }

    /// `(backbone, head)` of the head called `name`.
    pub fn find_head(&self, name: &str) -> Option<(usize, usize)> {
        self.backbones
            .iter()
            .enumerate()
            .find_map(|(b, bb)| bb.heads.iter().position(|h| h.name == name).map(|k| (b, k)))
    }
}

/// What one head produced on one frame.
#[derive(Clone, Debug)]
pub struct HeadResult {
    pub backbone: usize,
    pub name: String,
    /// Whether it ran this frame or its last result stands.
    pub status: HeadStatus,
    /// The decoded output: the last one when the head did not run, `None` until it first ran.
    pub output: Option<Head>,
    /// MACs executed in the head's own nodes this frame.
    pub macs: u64,
    /// Wall time of the head's own kernels this frame.
    pub time: Duration,
}

/// One stream through a bundle: a [`Session`] (its own cache) per backbone, fed the same
/// decoded frame.
pub struct BundleSession {
    bundle: Arc<Bundle>,
    sessions: Vec<Session>,
    /// The last decoded output of every head, reused while a head does not run.
    decoded: Vec<Vec<Option<Head>>>,
    /// A camera frame converted once for all backbones ([`BundleSession::process`]).
    converted: Vec<u8>,
    /// The workers the sessions share, kept spinning from one backbone to the next.
    pool: WorkerPool,
}

impl BundleSession {
    pub fn new(bundle: Arc<Bundle>, options: SessionOptions) -> Result<Self> {
        let mut sessions = Vec::with_capacity(bundle.backbones.len());
        // The backbones run one after the other: one pool of workers serves them all.
        let pool = WorkerPool::new(&options)?;
        for b in &bundle.backbones {
            let mut s = Session::with_pool(Arc::clone(&b.plan), options.clone(), pool.clone())?;
            for (k, h) in b.heads.iter().enumerate() {
                s.set_head_enabled(k, h.enabled)?;
            }
            sessions.push(s);
        }
        let decoded = bundle.backbones.iter().map(|b| vec![None; b.heads.len()]).collect();
        Ok(Self { bundle, sessions, decoded, converted: Vec::new(), pool })
    }

    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.bundle
    }
    /// The session of backbone `b` (statistics, options).
    pub fn session(&self, b: usize) -> &Session {
        &self.sessions[b]
    }

    /// Turns the head called `name` on or off.
    pub fn set_head_enabled(&mut self, name: &str, on: bool) -> Result<()> {
        let (b, k) = self.head(name)?;
        self.sessions[b].set_head_enabled(k, on)
    }

    /// Runs the head called `name` on every `rate`-th frame.
    pub fn set_head_rate(&mut self, name: &str, rate: u32) -> Result<()> {
        let (b, k) = self.head(name)?;
        self.sessions[b].set_head_rate(k, rate)
    }

    fn head(&self, name: &str) -> Result<(usize, usize)> {
        self.bundle.find_head(name).ok_or_else(|| Error::InvalidOption {
            name: "head",
            value: name.to_owned(),
            reason: "no head of that name in the bundle".into(),
        })
    }

    /// Drops every backbone's cache (and statistics): the next frame is computed in full.
    pub fn reset(&mut self) {
        for s in &mut self.sessions {
            s.reset();
        }
    }

    /// Cached path: every backbone reuses what it can; due heads run.
    ///
    /// A camera buffer ([`Image`]) is sampled from its planes by a single backbone. With
    /// several backbones it is converted once, upright, to one packed frame that they all
    /// read: each would otherwise convert again what it reads, most of the frame each.
    pub fn process<'f>(&mut self, frame: impl Into<Image<'f>>) -> Result<Vec<HeadResult>> {
        self.step(frame.into(), false)
    }

    /// Reference path: every backbone and every head computed in full.
    pub fn run_full<'f>(&mut self, frame: impl Into<Image<'f>>) -> Result<Vec<HeadResult>> {
        self.step(frame.into(), true)
    }

    fn step(&mut self, frame: Image<'_>, full: bool) -> Result<Vec<HeadResult>> {
        frame.validate()?;
        let _frame = self.pool.frame();
        let frame = if self.sessions.len() > 1 { Image::from(frame.to_frame(&mut self.converted)) } else { frame };
        let mut results = Vec::new();
        for (b, backbone) in self.bundle.backbones.iter().enumerate() {
            let session = &mut self.sessions[b];
            let outputs = if full { session.run_full(frame)? } else { session.process(frame)? };
            let stats = session.last_stats().expect("a processed frame has statistics");
            let (w, h) = frame.size();
            // Unless `aspect = "fixed"`, the session runs a plan of the frame's shape.
            let map = session.plan().frame_map(w, h);
            for (k, def) in backbone.heads.iter().enumerate() {
                let hs = stats.heads[k];
                let slot = &mut self.decoded[b][k];
                // Boxes and keypoints are in frame pixels, so a new frame size decodes again.
                let ran = hs.status != HeadStatus::Skipped;
                if ran && (slot.is_none() || hs.status == HeadStatus::Computed || stats.reset.is_some()) {
                    *slot = Some(backbone.decode(k, &outputs, &map));
                }
                results.push(HeadResult {
                    backbone: b,
                    name: def.name.clone(),
                    status: hs.status,
                    output: slot.clone(),
                    macs: hs.macs,
                    time: hs.time,
                });
            }
        }
        Ok(results)
    }
}
