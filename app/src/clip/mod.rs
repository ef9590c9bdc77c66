//! Clips: a folder of numbered PNG/JPEG frames, one image, or a `.y4m` file.

pub mod y4m;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// An owned RGB frame.
#[derive(Clone, Debug)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbFrame {
    pub fn as_frame(&self) -> framecache::Frame<'_> {
        framecache::Frame::rgb(self.width, self.height, &self.data)
    }
}

#[derive(Debug)]
enum Source {
    Images(Vec<PathBuf>),
    Y4m(y4m::Y4m),
}

/// An opened clip: its frames are listed (or indexed) but not decoded yet.
#[derive(Debug)]
pub struct Clip {
    pub path: PathBuf,
    /// The folder or file name, without extension.
    pub name: String,
    source: Source,
}

impl Clip {
    /// Lists the frames of a folder, or indexes a `.y4m` file. Errors name the path.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        let is_y4m = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
        let source = if is_y4m {
            Source::Y4m(y4m::Y4m::open(path)?)
        } else if path.is_file() {
            Source::Images(vec![path.to_owned()])
        } else {
            Source::Images(frame_paths(path)?)
        };
        Ok(Self { path: path.to_owned(), name, source })
    }

    pub fn len(&self) -> usize {
        match &self.source {
            Source::Images(p) => p.len(),
            Source::Y4m(y) => y.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Native frame rate, where the container gives one.
    pub fn fps(&self) -> Option<f64> {
        match &self.source {
            Source::Images(_) => None,
            Source::Y4m(y) => y.header.fps,
        }
    }

    /// A name for frame `i`: its file name, or `frame_NNNN` within a Y4M file.
    pub fn frame_name(&self, i: usize) -> String {
        match &self.source {
            Source::Images(p) => p[i].file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            Source::Y4m(_) => format!("frame_{:04}", i + 1),
        }
    }

    /// Decodes frame `i` (from 0). Errors name the file and the frame.
    pub fn decode(&self, i: usize) -> Result<RgbFrame> {
        match &self.source {
            Source::Images(p) => decode_image(&p[i]),
            Source::Y4m(y) => {
                let data = y.read_rgb(i)?;
                Ok(RgbFrame { width: y.header.width, height: y.header.height, data })
            }
        }
    }

    /// Decodes the first `limit` frames (all when `None`); all must have the size of the
    /// first. `each` is called per frame.
    pub fn decode_all(&self, limit: Option<usize>, mut each: impl FnMut()) -> Result<Vec<RgbFrame>> {
        let n = limit.map_or(self.len(), |l| l.min(self.len()));
        let mut frames: Vec<RgbFrame> = Vec::with_capacity(n);
        for i in 0..n {
            let f = self.decode(i)?;
            if let Some(first) = frames.first() {
                if (f.width, f.height) != (first.width, first.height) {
                    bail!(
                        "{}: frame {} ({}) is {}x{} but frame 1 ({}) is {}x{}: a clip's frames must share one size",
                        self.path.display(),
                        i + 1,
                        self.frame_name(i),
                        f.width,
                        f.height,
                        self.frame_name(0),
                        first.width,
                        first.height
                    );
                }
            }
            frames.push(f);
            each();
        }
        Ok(frames)
    }
}

/// The frame files of a folder, in name order.
pub fn frame_paths(path: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read clip folder {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .is_some_and(|e| e == "png" || e == "jpg" || e == "jpeg")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no PNG or JPEG frames", path.display());
    }
    Ok(files)
}

pub fn decode_image(path: &Path) -> Result<RgbFrame> {
    let img = image::open(path).with_context(|| format!("cannot decode frame {}", path.display()))?.to_rgb8();
    Ok(RgbFrame { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() })
}
