//! Frame sources for the CLI: a folder of numbered PNG/JPEG frames, or one image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// An owned RGB frame.
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

/// The frame files of a clip, in name order.
pub fn frame_paths(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
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

pub fn decode(path: &Path) -> Result<RgbFrame> {
    let img = image::open(path).with_context(|| format!("cannot decode frame {}", path.display()))?.to_rgb8();
    Ok(RgbFrame { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() })
}
