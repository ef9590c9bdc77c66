//! The demo window (eframe, glow renderer). It only draws and sends commands: frames are
//! captured and inferred on the pipeline's threads, and results are drained with `try_recv`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use eframe::egui::{self, Color32, ColorImage, Pos2, Rect, Stroke, TextureHandle, TextureOptions, Vec2};
use framecache::diff::Metric;
use framecache::Mode;

use super::pipeline::{EngineSettings, FrameResult, Loaded, Pipeline};
use super::source::{self, SourceSpec};
use super::state::DemoState;
use super::DemoArgs;
use framecache::heads::Head;

/// Frames before the screenshot when `--screenshot` is given without `--frames`.
const SCREENSHOT_FRAMES: u64 = 30;
const RECOMPUTED: Color32 = Color32::from_rgba_premultiplied(110, 20, 20, 110);
const REUSED: Color32 = Color32::from_rgba_premultiplied(0, 40, 10, 40);
const TILES: [usize; 4] = [8, 16, 24, 32];
const DETECTION: Color32 = Color32::from_rgb(255, 210, 40);
const KEYPOINT: Color32 = Color32::from_rgb(60, 230, 255);

pub fn run(args: DemoArgs) -> Result<()> {
    let model_path = match &args.model {
        Some(m) => m.clone(),
        None => crate::args::default_model()?,
    };
    let model = Loaded::load(&model_path, args.engine.preprocess.as_deref(), args.engine.input_size)?;
    let start = super::choose_source(args.source.clone(), args.fps)?;
    let settings =
        EngineSettings { mode: args.mode, tile: args.engine.tile, full: false, refresh: args.engine.refresh };
    args.engine.session_options(args.mode).validate()?;
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1180.0, 700.0]).with_title("framecache demo"),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    let summary = Arc::new(Mutex::new(None::<String>));
    let out = Arc::clone(&summary);
    eframe::run_native(
        "framecache demo",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let notify: super::pipeline::Notify = Arc::new(move || ctx.request_repaint());
            let pipeline = Pipeline::start(model, settings, args.engine.threads, notify);
            Ok(Box::new(DemoApp::new(pipeline, settings, start, &args, out)))
        }),
    )
    .map_err(|e| anyhow!("cannot open the demo window: {e}"))?;
    if let Some(s) = summary.lock().map_err(|_| anyhow!("summary lock poisoned"))?.take() {
        println!("{s}");
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ModeKind {
    Exact,
    Threshold,
    Delta,
}

/// `--screenshot`: wait for N frames, pause, let the picture settle, shoot, toggle the
/// overlay, shoot again, close.
struct Screenshot {
    path: PathBuf,
    frames: u64,
    stage: Stage,
    shot: Arc<Mutex<Option<Arc<ColorImage>>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    /// Paused; counts passes without new events.
    Settling(u32),
    First,
    ToggleOverlay,
    Second,
    Done,
}

/// The cameras the system lists, as `(index, name)`, or why there are none.
type CameraList = std::result::Result<Vec<(u32, String)>, String>;

struct DemoApp {
    pipeline: Pipeline,
    state: DemoState,
    settings: EngineSettings,
    kind: ModeKind,
    /// The tile test of the threshold and delta presets (kept from the starting mode).
    metric: Metric,
    level: f32,
    paused: bool,
    overlay: bool,
    mask: bool,
    video: Option<TextureHandle>,
    /// The result (by `DemoState::processed`) the textures show.
    shown: u64,
    mask_texture: Option<TextureHandle>,
    bundled_clip: Option<PathBuf>,
    fps: Option<f64>,
    clip_field: String,
    model_field: String,
    models: Vec<PathBuf>,
    cameras: Option<CameraList>,
    /// A camera query running on its own thread: listing cameras can wait for the system's
    /// permission prompt (up to a minute on macOS), which must not freeze the window.
    camera_query: Option<std::sync::mpsc::Receiver<CameraList>>,
    frames: Option<u64>,
    screenshot: Option<Screenshot>,
    summary: Arc<Mutex<Option<String>>>,
}

impl DemoApp {
    fn new(
        mut pipeline: Pipeline,
        settings: EngineSettings,
        start: super::Start,
        args: &DemoArgs,
        summary: Arc<Mutex<Option<String>>>,
    ) -> Self {
        pipeline.set_source(start.open);
        let (kind, metric, level) = match settings.mode {
            Mode::Exact => (ModeKind::Exact, Metric::BlockMean, 8.0),
            Mode::Threshold { metric, level } => (ModeKind::Threshold, metric, level),
            Mode::Delta { metric, level } => (ModeKind::Delta, metric, level),
        };
        let screenshot = args.screenshot.clone().map(|path| Screenshot {
            path,
            frames: args.frames.unwrap_or(SCREENSHOT_FRAMES),
            stage: Stage::Running,
            shot: Arc::default(),
        });
        let bundled_clip = crate::args::default_clip().ok().map(|p| p.canonicalize().unwrap_or(p));
        Self {
            pipeline,
            state: DemoState::new(start.fallback),
            settings,
            kind,
            metric,
            level,
            paused: false,
            overlay: !args.no_overlay,
            mask: true,
            video: None,
            shown: 0,
            mask_texture: None,
            clip_field: bundled_clip.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            bundled_clip,
            fps: args.fps,
            model_field: String::new(),
            models: bundled_models(),
            cameras: None,
            camera_query: None,
            frames: if args.screenshot.is_some() { None } else { args.frames },
            screenshot,
            summary,
        }
    }

    fn set_source(&mut self, spec: SourceSpec) {
        self.state.fallback = None;
        self.state.notice = None;
        self.pipeline.set_source(source::opener(spec, self.fps));
    }

    fn apply_settings(&mut self) {
        self.settings.mode = match self.kind {
            ModeKind::Exact => Mode::Exact,
            ModeKind::Threshold => Mode::Threshold { metric: self.metric, level: self.level },
            ModeKind::Delta => Mode::Delta { metric: self.metric, level: self.level },
        };
        self.pipeline.set_settings(self.settings);
    }

    fn drain(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.pipeline.try_event() {
            any = true;
            self.state.apply(event);
        }
        // A default camera that cannot be opened: play the bundled clip (the notice says why).
        if let Some(clip) = self.state.switch_to.take() {
            self.pipeline.set_source(source::opener(SourceSpec::Clip(clip), self.fps));
        }
        any
    }

    fn summary_line(&self) -> String {
        let (hit, saving) = self.state.mean_reuse().unwrap_or((0.0, 0.0));
        format!(
            "demo: processed {} frames, dropped {} stale, mean input hit rate {:.1}%, mean MAC saving {:.1}%, source {}",
            self.state.processed,
            self.pipeline.dropped(),
            100.0 * hit,
            100.0 * saving,
            self.state.source.as_deref().unwrap_or("none")
        )
    }

    fn close(&mut self, ctx: &egui::Context) {
        if let Ok(mut s) = self.summary.lock() {
            *s = Some(self.summary_line());
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// Advances `--frames` / `--screenshot`.
    fn automate(&mut self, ctx: &egui::Context, new_events: bool) {
        if let Some(limit) = self.frames {
            if self.state.processed >= limit {
                self.frames = None;
                self.close(ctx);
            }
        }
        let Some(shot) = &mut self.screenshot else { return };
        let taken = shot.shot.lock().ok().and_then(|mut s| s.take());
        ctx.request_repaint();
        match shot.stage {
            Stage::Running if self.state.processed >= shot.frames => {
                self.paused = true;
                self.pipeline.set_paused(true);
                shot.stage = Stage::Settling(0);
            }
            Stage::Settling(n) => {
                shot.stage = match (new_events, n) {
                    (true, _) => Stage::Settling(0),
                    (false, n) if n >= 5 => {
                        request_shot(ctx, &shot.shot);
                        Stage::First
                    }
                    (false, n) => Stage::Settling(n + 1),
                }
            }
            Stage::First => {
                if let Some(image) = taken {
                    if let Err(e) = save_png(&image, &shot.path) {
                        self.state.error = Some(format!("{e:#}"));
                    }
                    self.overlay = !self.overlay;
                    shot.stage = Stage::ToggleOverlay;
                }
            }
            Stage::ToggleOverlay => {
                // This pass paints the toggled overlay; the shot is of the next one.
                request_shot(ctx, &shot.shot);
                shot.stage = Stage::Second;
            }
            Stage::Second => {
                if let Some(image) = taken {
                    if let Err(e) = save_png(&image, &toggled_path(&shot.path)) {
                        self.state.error = Some(format!("{e:#}"));
                    }
                    shot.stage = Stage::Done;
                    self.close(ctx);
                }
            }
            Stage::Running | Stage::Done => {}
        }
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Engine");
        let before = (self.kind, self.level, self.settings.tile, self.settings.full);
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.kind, ModeKind::Exact, "exact");
            ui.selectable_value(&mut self.kind, ModeKind::Threshold, "threshold");
            ui.selectable_value(&mut self.kind, ModeKind::Delta, "delta");
        });
        ui.add_enabled(
            self.kind != ModeKind::Exact,
            egui::Slider::new(&mut self.level, 1.0..=64.0).step_by(1.0).text("grey levels"),
        );
        egui::ComboBox::from_label("tile (input px)").selected_text(self.settings.tile.to_string()).show_ui(ui, |ui| {
            for t in TILES {
                ui.selectable_value(&mut self.settings.tile, t, t.to_string());
            }
        });
        ui.checkbox(&mut self.settings.full, "full inference (no cache)");
        if before != (self.kind, self.level, self.settings.tile, self.settings.full) {
            self.apply_settings();
        }
        ui.horizontal(|ui| {
            if ui.button(if self.paused { "play" } else { "pause" }).clicked() {
                self.paused = !self.paused;
                self.pipeline.set_paused(self.paused);
            }
            if ui.add_enabled(self.paused, egui::Button::new("step")).clicked() {
                self.pipeline.step();
            }
        });
        ui.checkbox(&mut self.overlay, "show recomputed / reused tiles");
        ui.checkbox(&mut self.mask, "show segmentation mask");

        ui.separator();
        ui.heading("Source");
        ui.horizontal_wrapped(|ui| {
            if let Some(found) = self.camera_query.as_ref().and_then(|rx| rx.try_recv().ok()) {
                self.cameras = Some(found);
                self.camera_query = None;
            }
            if self.camera_query.is_some() {
                ui.label("looking for cameras...");
            } else if ui.button("find cameras").clicked() {
                let (tx, rx) = std::sync::mpsc::channel();
                let ctx = ui.ctx().clone();
                let spawned = std::thread::Builder::new().name("framecache-cameras".into()).spawn(move || {
                    let _ = tx.send(source::cameras().map_err(|e| e.to_string()));
                    ctx.request_repaint();
                });
                match spawned {
                    Ok(_) => self.camera_query = Some(rx),
                    Err(e) => self.cameras = Some(Err(format!("cannot look for cameras: {e}"))),
                }
            }
            if let Some(clip) = self.bundled_clip.clone() {
                if ui.button("bundled clip").clicked() {
                    self.set_source(SourceSpec::Clip(clip));
                }
            }
        });
        let mut chosen = None;
        match &self.cameras {
            Some(Ok(list)) if list.is_empty() => {
                ui.label("no camera found");
            }
            Some(Ok(list)) => {
                for (i, name) in list {
                    if ui.button(format!("camera {i}: {name}")).clicked() {
                        chosen = Some(SourceSpec::Camera(*i));
                    }
                }
            }
            Some(Err(e)) => {
                ui.label(e.as_str());
            }
            None => {}
        }
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.clip_field).hint_text("clip folder or .y4m").desired_width(170.0),
            );
            if ui.button("open").clicked() && !self.clip_field.trim().is_empty() {
                chosen = Some(SourceSpec::Clip(PathBuf::from(self.clip_field.trim())));
            }
        });
        if let Some(spec) = chosen {
            self.set_source(spec);
        }

        ui.separator();
        ui.heading("Model");
        let current = self.state.model.as_ref().map(|m| m.path.clone());
        let label = self.state.model.as_ref().map_or("loading", |m| m.name.as_str()).to_owned();
        let mut switch = None;
        egui::ComboBox::from_id_salt("model").selected_text(label).show_ui(ui, |ui| {
            for m in &self.models {
                let name = m.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                if ui.selectable_label(current.as_ref() == Some(m), name).clicked() {
                    switch = Some(m.clone());
                }
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.model_field)
                    .hint_text("model .onnx or bundle .toml")
                    .desired_width(170.0),
            );
            if ui.button("load").clicked() && !self.model_field.trim().is_empty() {
                switch = Some(PathBuf::from(self.model_field.trim()));
            }
        });
        if let Some(m) = switch {
            self.pipeline.set_model(m);
        }
        if let Some(m) = &self.state.model {
            ui.label(format!("{}, input {}x{}, {:.0} MMACs/frame", m.kind, m.input.1, m.input.0, m.macs as f64 / 1e6));
        }
    }

    fn statistics(&self, ui: &mut egui::Ui) {
        ui.heading("Live");
        let fmt = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1} {unit}"));
        egui::Grid::new("stats").num_columns(2).show(ui, |ui| {
            ui.label("frames processed");
            ui.label(self.state.processed.to_string());
            ui.end_row();
            ui.label("capture");
            ui.label(fmt(self.state.capture_fps(), "fps"));
            ui.end_row();
            ui.label("inference");
            ui.label(fmt(self.state.inference_fps(), "fps"));
            ui.end_row();
            ui.label("latency");
            ui.label(fmt(self.state.latency_ms(), "ms"));
            ui.end_row();
            if let Some(r) = &self.state.latest {
                ui.label("engine");
                ui.label(format!("{:.1} ms", r.engine.as_secs_f64() * 1e3));
                ui.end_row();
                ui.label("input hit rate");
                ui.label(format!("{:.1}%", 100.0 * r.stats.input_hit_rate()));
                ui.end_row();
                ui.label("MAC saving");
                ui.label(format!("{:.1}%", 100.0 * r.stats.mac_saving()));
                ui.end_row();
            }
            ui.label("dropped (stale)");
            ui.label(self.pipeline.dropped().to_string());
            ui.end_row();
        });
        if let Some(r) = &self.state.latest {
            ui.label(format!("hit rate per node, input to output ({} nodes)", r.stats.nodes.len()));
            node_chart(ui, &r.stats.nodes.iter().map(|n| n.hit_rate as f32).collect::<Vec<_>>());
        }
    }

    fn results(&self, ui: &mut egui::Ui) {
        let Some(r) = &self.state.latest else { return };
        for h in &r.head_runs {
            ui.label(format!("head {}: {:?}, {:.1} MMACs", h.name, h.status, h.macs as f64 / 1e6));
        }
        if !r.head_runs.is_empty() {
            ui.label(format!("backbone(s): {:.1} MMACs", r.stats.backbone_macs() as f64 / 1e6));
        }
        for head in &r.heads {
            match head {
                Head::Classes { output, top } => {
                    ui.label(egui::RichText::new(output).strong());
                    for c in top {
                        ui.add(egui::ProgressBar::new(c.prob).text(format!("{} {:.1}%", c.label, 100.0 * c.prob)));
                    }
                }
                Head::Mask { output, probs, threshold, .. } => {
                    let cover = probs.iter().filter(|&&p| p >= *threshold).count() as f32 / probs.len().max(1) as f32;
                    ui.label(format!("{output}: mask covers {:.1}% of the view", 100.0 * cover));
                }
                Head::Values { output, shape, min, max } => {
                    ui.label(format!("{output} {shape:?}: {min:.3} ... {max:.3}"));
                }
                Head::Detections { output, detections } => {
                    let best = detections.first().map_or(String::new(), |d| format!(", best {:.2}", d.score));
                    ui.label(format!("{output}: {} detections{best}", detections.len()));
                }
                Head::Keypoints { output, points, presence } => {
                    let p = presence.map_or(String::new(), |p| format!(", presence {p:.2}"));
                    ui.label(format!("{output}: {} keypoints{p}", points.len()));
                }
            }
        }
    }

    fn video(&mut self, ui: &mut egui::Ui) {
        let Some(r) = self.state.latest.as_deref() else {
            ui.centered_and_justified(|ui| ui.label("waiting for frames..."));
            return;
        };
        let frame = &r.captured.frame;
        if self.video.is_none() || self.shown != self.state.processed {
            self.shown = self.state.processed;
            let image = ColorImage::from_rgb([frame.width, frame.height], &frame.data);
            match &mut self.video {
                Some(t) => t.set(image, TextureOptions::LINEAR),
                None => self.video = Some(ui.ctx().load_texture("video", image, TextureOptions::LINEAR)),
            }
            self.mask_texture = mask_image(r).map(|m| ui.ctx().load_texture("mask", m, TextureOptions::LINEAR));
        }
        let Some(texture) = &self.video else { return };
        let area = ui.available_rect_before_wrap();
        let scale = (area.width() / frame.width as f32).min(area.height() / frame.height as f32);
        let rect = Rect::from_center_size(area.center(), Vec2::new(frame.width as f32, frame.height as f32) * scale);
        let painter = ui.painter_at(area);
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        painter.image(texture.id(), rect, uv, Color32::WHITE);
        // Frame pixels → screen.
        let (rx, ry, rw, rh) = r.region;
        let to_screen = |x: f32, y: f32| rect.min + Vec2::new(x, y) * scale;
        let view = Rect::from_min_max(to_screen(rx, ry), to_screen(rx + rw, ry + rh));
        if let (true, Some(mask)) = (self.mask, &self.mask_texture) {
            painter.image(mask.id(), view, uv, Color32::WHITE);
        }
        if self.overlay {
            let (ih, iw) = r.input;
            let t = r.stats.tiling;
            let (sx, sy) = (view.width() / iw as f32, view.height() / ih as f32);
            for ty in 0..t.rows {
                for tx in 0..t.cols {
                    let (y0, y1, x0, x1) = t.bounds(ty, tx, ih, iw);
                    let tile = Rect::from_min_max(
                        view.min + Vec2::new(x0 as f32 * sx, y0 as f32 * sy),
                        view.min + Vec2::new(x1 as f32 * sx, y1 as f32 * sy),
                    );
                    let dirty = r.stats.dirty.get(ty * t.cols + tx).copied().unwrap_or(true);
                    painter.rect_filled(tile.shrink(0.5), 0.0, if dirty { RECOMPUTED } else { REUSED });
                }
            }
        }
        painter.rect_stroke(view, 0.0, Stroke::new(1.0, Color32::from_gray(200)), egui::StrokeKind::Outside);
        // Boxes and landmarks, in frame pixels.
        for h in &r.heads {
            match h {
                Head::Detections { detections, .. } => {
                    for d in detections {
                        let b = Rect::from_min_max(to_screen(d.bbox[0], d.bbox[1]), to_screen(d.bbox[2], d.bbox[3]));
                        painter.rect_stroke(b, 0.0, Stroke::new(2.0, DETECTION), egui::StrokeKind::Middle);
                        for k in &d.keypoints {
                            painter.circle_filled(to_screen(k[0], k[1]), 2.5, DETECTION);
                        }
                        painter.text(
                            b.left_top(),
                            egui::Align2::LEFT_BOTTOM,
                            format!("{:.0}%", 100.0 * d.score),
                            egui::FontId::proportional(12.0),
                            DETECTION,
                        );
                    }
                }
                Head::Keypoints { points, .. } => {
                    for p in points.iter().filter(|p| p.visibility.is_none_or(|v| v >= 0.5)) {
                        painter.circle_filled(to_screen(p.x, p.y), 3.0, KEYPOINT);
                    }
                }
                _ => {}
            }
        }
        // Top classes on the picture.
        if let Some(Head::Classes { top, .. }) = r.heads.iter().find(|h| matches!(h, Head::Classes { .. })) {
            let text = top
                .iter()
                .take(3)
                .map(|c| format!("{}  {:.0}%", c.label, 100.0 * c.prob))
                .collect::<Vec<_>>()
                .join("\n");
            let galley = painter.layout_no_wrap(text, egui::FontId::proportional(15.0), Color32::WHITE);
            let at = rect.min + Vec2::splat(8.0);
            painter.rect_filled(
                Rect::from_min_size(at, galley.size()).expand(4.0),
                4.0,
                Color32::from_black_alpha(150),
            );
            painter.galley(at, galley, Color32::WHITE);
        }
        let mode = if r.settings.full { "full inference".to_owned() } else { r.settings.mode.to_string() };
        let caption = format!("frame {} · {mode} · tile {}", r.captured.index, r.settings.tile);
        painter.text(
            rect.left_bottom() + Vec2::new(6.0, -6.0),
            egui::Align2::LEFT_BOTTOM,
            caption,
            egui::FontId::monospace(13.0),
            Color32::WHITE,
        );
    }
}

impl eframe::App for DemoApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let new_events = self.drain();
        self.automate(&ctx, new_events);
        egui::Panel::top("messages").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(egui::RichText::new("framecache").strong());
                ui.label(self.state.source.as_deref().unwrap_or("starting..."));
            });
            if let Some(n) = &self.state.notice {
                ui.colored_label(Color32::from_rgb(230, 190, 60), n);
            }
            let mut dismiss = false;
            let mut play_clip = false;
            if let Some(e) = &self.state.error {
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(Color32::from_rgb(240, 90, 80), e);
                    if self.state.source_failed && self.bundled_clip.is_some() {
                        play_clip = ui.button("play the bundled clip").clicked();
                    }
                    dismiss = ui.small_button("dismiss").clicked();
                });
            }
            if dismiss {
                self.state.error = None;
            }
            if play_clip {
                if let Some(c) = self.bundled_clip.clone() {
                    self.set_source(SourceSpec::Clip(c));
                }
            }
        });
        egui::Panel::right("side").exact_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                self.controls(ui);
                ui.separator();
                self.statistics(ui);
                ui.separator();
                self.results(ui);
            });
        });
        egui::CentralPanel::default().show(ui, |ui| self.video(ui));
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.pipeline.shutdown();
        if let Ok(mut s) = self.summary.lock() {
            if s.is_none() {
                *s = Some(self.summary_line());
            }
        }
    }
}

fn request_shot(ctx: &egui::Context, slot: &Arc<Mutex<Option<Arc<ColorImage>>>>) {
    let (slot, repaint) = (Arc::clone(slot), ctx.clone());
    ctx.request_screenshot(move |image| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(image);
        }
        repaint.request_repaint();
    });
}

/// `out.png` → `out.overlay-toggled.png`.
pub fn toggled_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.overlay-toggled.png"))
}

fn save_png(image: &ColorImage, path: &Path) -> Result<()> {
    let [w, h] = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_srgba_unmultiplied()).collect();
    image::save_buffer(path, &rgba, w as u32, h as u32, image::ColorType::Rgba8)
        .with_context(|| format!("writing screenshot {}", path.display()))
}

/// Colours of the masks, in head order: blue, then orange, green and magenta.
const MASK_COLOURS: [[u8; 3]; 4] = [[40, 120, 255], [255, 150, 30], [60, 220, 90], [230, 60, 200]];

/// The segmentation masks as one translucent picture, each head in its own colour
/// ([`MASK_COLOURS`]; where masks overlap, the later head's shows), at the size of the first
/// (the others sampled at the nearest position), if the model has any.
fn mask_image(r: &FrameResult) -> Option<ColorImage> {
    let masks: Vec<(usize, usize, &[f32])> = r
        .heads
        .iter()
        .filter_map(|h| match h {
            Head::Mask { width, height, probs, .. } if *width > 0 && *height > 0 => {
                Some((*width, *height, probs.as_slice()))
            }
            _ => None,
        })
        .collect();
    let &(w, h, _) = masks.first()?;
    let mut pixels = vec![Color32::TRANSPARENT; w * h];
    for (k, &(mw, mh, probs)) in masks.iter().enumerate() {
        let [red, green, blue] = MASK_COLOURS[k % MASK_COLOURS.len()];
        for (i, px) in pixels.iter_mut().enumerate() {
            let (x, y) = (i % w * mw / w, i / w * mh / h);
            let p = probs.get(y * mw + x).copied().unwrap_or(0.0).clamp(0.0, 1.0);
            if p >= 0.5 || k == 0 {
                *px = Color32::from_rgba_unmultiplied(red, green, blue, (p * 150.0) as u8);
            }
        }
    }
    Some(ColorImage::new([w, h], pixels))
}

/// One bar per node, its height the node's hit rate.
fn node_chart(ui: &mut egui::Ui, rates: &[f32]) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(ui.available_width(), 70.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, Color32::from_gray(30));
    let w = rect.width() / rates.len().max(1) as f32;
    for (i, &h) in rates.iter().enumerate() {
        let x = rect.min.x + i as f32 * w;
        let bar =
            Rect::from_min_max(Pos2::new(x, rect.max.y - h * rect.height()), Pos2::new(x + w.max(1.0), rect.max.y));
        painter.rect_filled(bar, 0.0, Color32::from_rgb(80, 170, 110));
    }
}

/// The models in `assets/models/` (those with a sidecar beside them or in that folder), then
/// the bundle manifests in `assets/bundles/` (some need ../shared/data; a failed switch keeps
/// the running model and says why).
fn bundled_models() -> Vec<PathBuf> {
    let Ok(assets) = crate::args::assets_dir() else { return Vec::new() };
    let list = |dir: PathBuf, ext: &str| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    };
    let mut models = list(assets.join("models"), "onnx");
    models.extend(list(assets.join("bundles"), "toml"));
    models
}
