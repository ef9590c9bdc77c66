//! Where the demo's frames come from: a clip played in a loop at its frame rate, or a camera.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clip::{Clip, RgbFrame};

/// Frame rate of a folder of images, which carries none (Y4M files carry their own).
pub const DEFAULT_CLIP_FPS: f64 = 30.0;

/// What the user asked to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// A camera by index (`camera` is index 0).
    Camera(u32),
    /// A folder of numbered frames, one image or a `.y4m` file.
    Clip(PathBuf),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    /// `camera`, `camera:INDEX`, or a path.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("camera") {
            Some("") => Ok(Self::Camera(0)),
            Some(rest) if rest.starts_with(':') => rest[1..]
                .parse()
                .map(Self::Camera)
                .map_err(|_| format!("`{s}`: expected camera:INDEX with a number, e.g. camera:1")),
            _ => Ok(Self::Clip(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Camera(i) => write!(f, "camera:{i}"),
            Self::Clip(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One captured frame, shared by the engine worker and the window.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Frames this source has delivered before this one (dropped ones included).
    pub index: u64,
    pub frame: Arc<RgbFrame>,
    pub at: Instant,
}

/// Why a source stopped delivering frames. The message is shown in the window as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("no camera found")]
    NoCamera,
    #[error("camera {index}: {reason}")]
    Camera { index: u32, reason: String },
    #[error("this build has no camera support (built without the `camera` feature)")]
    CameraDisabled,
    #[error("{0}")]
    Clip(String),
}

/// A source of frames, opened and read on the capture thread (cameras need not be `Send`).
pub trait FrameSource {
    /// One line for the window: what is playing.
    fn describe(&self) -> String;
    /// The next frame, waiting for it if needed; `Ok(None)` at the end of a finite source.
    fn next_frame(&mut self) -> Result<Option<Arc<RgbFrame>>, SourceError>;
    /// The interval to keep between frames (a clip's frame rate); `None` for sources that
    /// pace themselves (cameras block until the next frame).
    fn interval(&self) -> Option<Duration>;
}

/// Decoded frames a clip keeps for its next loops, in bytes. A short clip loops without decoding
/// again; beyond this the rest is decoded on every loop, so memory stays bounded whatever the
/// clip's length (a minute of 1080p is 11 GB decoded).
const CLIP_KEEP_BYTES: usize = 256 << 20;

/// A clip played in a loop. Frames are decoded on demand; the first [`CLIP_KEEP_BYTES`] of them
/// are kept, so later loops of a short clip cost nothing.
pub struct ClipSource {
    clip: Clip,
    decoded: Vec<Option<Arc<RgbFrame>>>,
    /// Bytes that may still be kept.
    keep: usize,
    next: usize,
    interval: Duration,
}

impl ClipSource {
    pub fn open(path: &std::path::Path, fps: Option<f64>) -> Result<Self, SourceError> {
        Self::keeping(path, fps, CLIP_KEEP_BYTES)
    }

    fn keeping(path: &std::path::Path, fps: Option<f64>, keep: usize) -> Result<Self, SourceError> {
        let clip = Clip::open(path).map_err(|e| SourceError::Clip(format!("{e:#}")))?;
        if clip.is_empty() {
            return Err(SourceError::Clip(format!("{}: no frames", path.display())));
        }
        let fps = fps.or(clip.fps()).filter(|f| *f > 0.0).unwrap_or(DEFAULT_CLIP_FPS);
        let decoded = vec![None; clip.len()];
        Ok(Self { clip, decoded, keep, next: 0, interval: Duration::from_secs_f64(1.0 / fps) })
    }
}

impl FrameSource for ClipSource {
    fn describe(&self) -> String {
        format!(
            "clip {} ({} frames at {:.0} fps, looped)",
            self.clip.path.display(),
            self.clip.len(),
            1.0 / self.interval.as_secs_f64()
        )
    }
    fn next_frame(&mut self) -> Result<Option<Arc<RgbFrame>>, SourceError> {
        let i = self.next;
        self.next = (i + 1) % self.clip.len();
        if let Some(frame) = &self.decoded[i] {
            return Ok(Some(Arc::clone(frame)));
        }
        let frame = Arc::new(self.clip.decode(i).map_err(|e| SourceError::Clip(format!("{e:#}")))?);
        if frame.data.len() <= self.keep {
            self.keep -= frame.data.len();
            self.decoded[i] = Some(Arc::clone(&frame));
        }
        Ok(Some(frame))
    }
    fn interval(&self) -> Option<Duration> {
        Some(self.interval)
    }
}

/// Asks for camera access where the system wants that first (macOS AVFoundation; elsewhere
/// nokhwa reports access as granted at once).
#[cfg(feature = "camera")]
fn camera_access(index: u32) -> Result<(), SourceError> {
    if nokhwa::nokhwa_check() {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    nokhwa::nokhwa_initialize(move |granted| {
        let _ = tx.send(granted);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(true) => Ok(()),
        _ => Err(SourceError::Camera {
            index,
            reason: "camera access was not granted (macOS: System Settings > Privacy & Security > Camera)".into(),
        }),
    }
}

/// Cameras the system lists, as `(index, name)`.
#[cfg(feature = "camera")]
pub fn cameras() -> Result<Vec<(u32, String)>, SourceError> {
    use nokhwa::utils::{ApiBackend, CameraIndex};
    camera_access(0)?;
    let list = nokhwa::query(ApiBackend::Auto).map_err(|e| SourceError::Camera { index: 0, reason: e.to_string() })?;
    Ok(list
        .into_iter()
        .filter_map(|c| match c.index() {
            CameraIndex::Index(i) => Some((*i, c.human_name())),
            CameraIndex::String(_) => None,
        })
        .collect())
}

#[cfg(not(feature = "camera"))]
pub fn cameras() -> Result<Vec<(u32, String)>, SourceError> {
    Err(SourceError::CameraDisabled)
}

/// Opens camera `index` at its highest frame rate, RGB.
pub fn open_camera(index: u32) -> Result<Box<dyn FrameSource>, SourceError> {
    #[cfg(feature = "camera")]
    {
        Ok(Box::new(camera::CameraSource::open(index)?))
    }
    #[cfg(not(feature = "camera"))]
    {
        let _ = index;
        Err(SourceError::CameraDisabled)
    }
}

#[cfg(feature = "camera")]
mod camera {
    use nokhwa::pixel_format::RgbFormat;
    use nokhwa::utils::{CameraIndex, RequestedFormat, RequestedFormatType};
    use nokhwa::Camera;

    use std::sync::Arc;

    use super::{FrameSource, RgbFrame, SourceError};

    pub struct CameraSource {
        index: u32,
        name: String,
        camera: Camera,
    }

    impl CameraSource {
        pub fn open(index: u32) -> Result<Self, SourceError> {
            super::camera_access(index)?;
            let fail = |e: nokhwa::NokhwaError| SourceError::Camera { index, reason: explain(&e.to_string()) };
            let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
            let mut camera = Camera::new(CameraIndex::Index(index), format).map_err(fail)?;
            camera.open_stream().map_err(fail)?;
            let name = camera.info().human_name();
            Ok(Self { index, name, camera })
        }
    }

    impl FrameSource for CameraSource {
        fn describe(&self) -> String {
            let r = self.camera.resolution();
            format!(
                "camera {} ({}, {}x{} at {} fps)",
                self.index,
                self.name,
                r.width(),
                r.height(),
                self.camera.frame_rate()
            )
        }
        fn next_frame(&mut self) -> Result<Option<Arc<RgbFrame>>, SourceError> {
            let index = self.index;
            let fail = |e: nokhwa::NokhwaError| SourceError::Camera { index, reason: explain(&e.to_string()) };
            let buffer = self.camera.frame().map_err(fail)?;
            let image = buffer.decode_image::<RgbFormat>().map_err(fail)?;
            let (width, height) = (image.width() as usize, image.height() as usize);
            Ok(Some(Arc::new(RgbFrame { width, height, data: image.into_raw() })))
        }
        fn interval(&self) -> Option<std::time::Duration> {
            None
        }
    }

    impl Drop for CameraSource {
        fn drop(&mut self) {
            let _ = self.camera.stop_stream();
        }
    }

    /// nokhwa's message plus what the user can do about the usual causes.
    fn explain(message: &str) -> String {
        let lower = message.to_lowercase();
        let hint = if lower.contains("permission denied") || lower.contains("not authorized") {
            " (permission denied: on Linux add yourself to the `video` group; on macOS allow camera access)"
        } else if lower.contains("busy") {
            " (the camera is busy: another program is using it)"
        } else if lower.contains("no such device") || lower.contains("no such file") {
            " (the camera is gone: unplugged, or the index is wrong)"
        } else {
            ""
        };
        format!("{message}{hint}")
    }
}

/// Opens the first camera the system lists, when the capture thread calls it (listing may wait
/// for camera access to be granted).
pub fn first_camera() -> super::pipeline::Opener {
    Box::new(|| {
        let (index, _) = cameras()?.into_iter().next().ok_or(SourceError::NoCamera)?;
        open_camera(index)
    })
}

/// Opens `spec` when the capture thread calls it. `fps` overrides a clip's frame rate.
pub fn opener(spec: SourceSpec, fps: Option<f64>) -> super::pipeline::Opener {
    Box::new(move || match spec {
        SourceSpec::Camera(i) => open_camera(i),
        SourceSpec::Clip(p) => Ok(Box::new(ClipSource::open(&p, fps)?) as Box<dyn FrameSource>),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clip longer than the keep budget streams: only what fits is kept, and every loop
    /// still gives the same frames.
    #[test]
    fn a_clip_beyond_the_keep_budget_is_decoded_again_not_kept() {
        let path = crate::args::default_clip().unwrap();
        let first = ClipSource::open(&path, None).unwrap().next_frame().unwrap().unwrap();
        let frame_bytes = first.data.len();
        let mut clip = ClipSource::keeping(&path, None, 2 * frame_bytes + frame_bytes / 2).unwrap();
        let n = clip.clip.len();
        assert!(n > 2, "the bundled clip has {n} frames");
        let one: Vec<_> = (0..n).map(|_| clip.next_frame().unwrap().unwrap()).collect();
        assert_eq!(clip.decoded.iter().filter(|f| f.is_some()).count(), 2);
        assert!(clip.keep < frame_bytes);
        for (i, before) in one.iter().enumerate() {
            let again = clip.next_frame().unwrap().unwrap();
            assert_eq!(again.data, before.data, "frame {i}");
            assert_eq!(Arc::ptr_eq(&again, before), i < 2, "frame {i}");
        }
    }
}
