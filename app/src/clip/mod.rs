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

    /// Decodes frame `i`, which must have the size of frame 1, `first` (errors name both).
    pub fn decode_sized(&self, i: usize, first: (usize, usize)) -> Result<RgbFrame> {
        let f = self.decode(i)?;
        if (f.width, f.height) != first {
            bail!(
                "{}: frame {} ({}) is {}x{} but frame 1 ({}) is {}x{}: a clip's frames must share one size",
                self.path.display(),
                i + 1,
                self.frame_name(i),
                f.width,
                f.height,
                self.frame_name(0),
                first.0,
                first.1
            );
        }
        Ok(f)
    }

    /// Decodes the first `limit` frames (all when `None`); all must have the size of the
    /// first. `each` is called per frame. This holds every frame: long clips go frame by
    /// frame through [`Clip::decode_sized`] instead.
    pub fn decode_all(&self, limit: Option<usize>, mut each: impl FnMut()) -> Result<Vec<RgbFrame>> {
        let n = limit.map_or(self.len(), |l| l.min(self.len()));
        let mut frames: Vec<RgbFrame> = Vec::with_capacity(n);
        for i in 0..n {
            let f = match frames.first() {
                Some(first) => self.decode_sized(i, (first.width, first.height))?,
                None => self.decode(i)?,
            };
            frames.push(f);
            each();
        }
        Ok(frames)
    }
}

/// The frame files of a folder, in frame-number order: names are compared with each run of
/// digits read as a number, so `frame_2` comes before `frame_10` whether or not the numbers
/// are zero-padded.
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
    files.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    if files.is_empty() {
        bail!("{} holds no PNG or JPEG frames", path.display());
    }
    Ok(files)
}

/// `a` against `b` with every run of ASCII digits compared as a number (then, for equal
/// numbers such as `7` and `007`, by the text itself).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digits = first.is_ascii_digit();
            let end = rest.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some((digits, chunk))
        })
    }
    let (mut x, mut y) = (chunks(a), chunks(b));
    loop {
        let order = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            (Some((_, p)), Some((_, q))) => p.cmp(q),
        };
        if order.is_ne() {
            return order;
        }
    }
}

/// Largest frame side decoded from an image file (16384 pixels); the image crate's own
/// allocation limit (512 MiB) applies too.
pub const MAX_IMAGE_SIDE: u32 = 1 << 14;

/// Decodes one image file. A FIFO or device is refused before it is opened.
pub fn decode_image(path: &Path) -> Result<RgbFrame> {
    let ctx = || format!("cannot decode frame {}", path.display());
    framecache::files::check_regular(path, framecache::files::MAX_MODEL_BYTES).with_context(ctx)?;
    let mut reader = image::ImageReader::open(path).with_context(ctx)?.with_guessed_format().with_context(ctx)?;
    let mut limits = image::Limits::default();
    (limits.max_image_width, limits.max_image_height) = (Some(MAX_IMAGE_SIDE), Some(MAX_IMAGE_SIDE));
    reader.limits(limits);
    let img = reader.decode().with_context(ctx)?.to_rgb8();
    Ok(RgbFrame { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() })
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;

    #[test]
    fn frames_sort_by_number() {
        let mut names = vec!["frame_10.png", "frame_2.png", "frame_1.png", "frame_11.png", "frame_002.png"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["frame_1.png", "frame_002.png", "frame_2.png", "frame_10.png", "frame_11.png"]);
        let mut padded = vec!["f_0003.png", "f_0001.png", "f_0002.png"];
        padded.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(padded, ["f_0001.png", "f_0002.png", "f_0003.png"]);
    }
}
