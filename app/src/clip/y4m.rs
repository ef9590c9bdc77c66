//! YUV4MPEG2 (`.y4m`) files: 8-bit 4:2:0 (`C420jpeg`, `C420paldv`, `C420mpeg2`, `C420`), 4:4:4
//! (`C444`) and greyscale (`Cmono`). The file is indexed once; frames are read on demand.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use framecache::frame::Plane;
use framecache::{YuvImage, YuvRange};

/// Longest header line accepted, in bytes.
const MAX_HEADER: usize = 4096;
/// Most pixels of one frame (64 Mpx, 8192x8192); each side is at most
/// [`super::MAX_IMAGE_SIDE`].
pub const MAX_PIXELS: usize = 1 << 26;

/// Pixel layout of a Y4M stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    C420,
    C444,
    Mono,
}

/// The stream header.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    /// Frames per second, when the header gives a valid `F` rate.
    pub fps: Option<f64>,
    pub chroma: Chroma,
    pub range: YuvRange,
}

impl Header {
    /// Parses the first line of a Y4M file (without its newline).
    pub fn parse(line: &str) -> Result<Self> {
        let mut tokens = line.split(' ');
        if tokens.next() != Some("YUV4MPEG2") {
            bail!("not a YUV4MPEG2 file: the header starts with {:?}", line.chars().take(10).collect::<String>());
        }
        let (mut width, mut height, mut fps) = (None, None, None);
        let (mut chroma, mut range) = (Chroma::C420, YuvRange::Limited);
        for t in tokens.filter(|t| !t.is_empty()) {
            // Split after the first character, not byte: a header is untrusted text.
            let (tag, value) = t.split_at(t.chars().next().map_or(0, char::len_utf8));
            match tag {
                "W" => width = Some(parse_dim(value, "width")?),
                "H" => height = Some(parse_dim(value, "height")?),
                "F" => fps = parse_ratio(value).filter(|f| f.is_finite() && *f > 0.0),
                "C" => {
                    chroma = match value {
                        "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::C420,
                        "444" => Chroma::C444,
                        "mono" => Chroma::Mono,
                        other => bail!("colour space C{other} is not supported (8-bit 4:2:0, 4:4:4 or mono only)"),
                    }
                }
                "X" if value.eq_ignore_ascii_case("COLORRANGE=FULL") => range = YuvRange::Full,
                "X" if value.eq_ignore_ascii_case("COLORRANGE=LIMITED") => range = YuvRange::Limited,
                "I" | "A" | "X" => {}
                _ => bail!("unknown header field {t:?}"),
            }
        }
        let width = width.context("the header has no width (W)")?;
        let height = height.context("the header has no height (H)")?;
        if width * height > MAX_PIXELS {
            bail!("{width}x{height} frames are over the limit of {MAX_PIXELS} pixels");
        }
        Ok(Self { width, height, fps, chroma, range })
    }

    /// Bytes of one frame's pixel data.
    pub fn frame_bytes(&self) -> usize {
        let luma = self.width * self.height;
        match self.chroma {
            Chroma::C420 => luma + 2 * self.width.div_ceil(2) * self.height.div_ceil(2),
            Chroma::C444 => 3 * luma,
            Chroma::Mono => luma,
        }
    }

    /// Converts one frame's pixel data to packed RGB.
    pub fn to_rgb(&self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let (w, h) = (self.width, self.height);
        match self.chroma {
            Chroma::C420 => YuvImage::i420(w, h, data, self.range)?.to_rgb(out)?,
            Chroma::C444 => YuvImage::yuv444(w, h, data, self.range)?.to_rgb(out)?,
            Chroma::Mono => {
                // Neutral chroma as constant planes: no buffer beyond the luma and the output.
                let neutral = Plane { data: &[128], stride: 0, step: 0 };
                let y = Plane { data, stride: w, step: 1 };
                let img = YuvImage { width: w, height: h, y, u: neutral, v: neutral, subsample: 1, range: self.range };
                img.to_rgb(out)?
            }
        }
        Ok(())
    }
}

fn parse_dim(value: &str, what: &str) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(v) if v > 0 && v <= super::MAX_IMAGE_SIDE as usize => Ok(v),
        _ => bail!("invalid {what} {value:?}"),
    }
}

fn parse_ratio(value: &str) -> Option<f64> {
    let (n, d) = value.split_once(':')?;
    Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?)
}

/// An indexed Y4M file.
#[derive(Debug)]
pub struct Y4m {
    pub path: PathBuf,
    pub header: Header,
    /// Byte offset of each frame's pixel data.
    offsets: Vec<u64>,
}

impl Y4m {
    /// Reads the header and indexes every frame. A truncated last frame is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        // A FIFO or device is refused before it is opened (it would block or never end).
        framecache::files::check_regular(path, u64::MAX).with_context(|| format!("cannot open {}", path.display()))?;
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata()?.len();
        let mut r = BufReader::new(file);
        let line = read_line(&mut r).with_context(|| format!("{}: bad stream header", path.display()))?;
        let header = Header::parse(&line).with_context(|| format!("{}: bad stream header", path.display()))?;
        let mut pos = line.len() as u64 + 1;
        let bytes = header.frame_bytes() as u64;
        let mut offsets = Vec::new();
        while pos < len {
            let n = offsets.len() + 1;
            let frame_line =
                read_line(&mut r).with_context(|| format!("{}: frame {n}: bad frame header", path.display()))?;
            if !frame_line.starts_with("FRAME") {
                bail!("{}: frame {n}: expected a FRAME header, found {:?}", path.display(), truncate(&frame_line));
            }
            pos += frame_line.len() as u64 + 1;
            if pos + bytes > len {
                bail!(
                    "{}: frame {n} is truncated: it needs {bytes} bytes, the file has {} left",
                    path.display(),
                    len - pos
                );
            }
            offsets.push(pos);
            pos += bytes;
            r.seek(SeekFrom::Start(pos))?;
        }
        if offsets.is_empty() {
            bail!("{} holds no frames", path.display());
        }
        Ok(Self { path: path.to_owned(), header, offsets })
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Frame `i` (from 0) as packed RGB.
    pub fn read_rgb(&self, i: usize) -> Result<Vec<u8>> {
        let ctx = || format!("{}: frame {}", self.path.display(), i + 1);
        let mut f = File::open(&self.path).with_context(ctx)?;
        f.seek(SeekFrom::Start(self.offsets[i])).with_context(ctx)?;
        let mut data = vec![0; self.header.frame_bytes()];
        f.read_exact(&mut data).with_context(ctx)?;
        let mut rgb = Vec::new();
        self.header.to_rgb(&data, &mut rgb).with_context(ctx)?;
        Ok(rgb)
    }
}

/// One `\n`-terminated ASCII line, without the newline.
fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut buf = Vec::new();
    r.by_ref().take(MAX_HEADER as u64).read_until(b'\n', &mut buf)?;
    if buf.last() != Some(&b'\n') {
        if buf.len() >= MAX_HEADER {
            bail!("header line longer than {MAX_HEADER} bytes");
        }
        bail!("the file ends inside a header line");
    }
    buf.pop();
    String::from_utf8(buf).context("header is not ASCII text")
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_headers() {
        let h = Header::parse("YUV4MPEG2 W320 H180 F25:1 Ip A1:1 C420jpeg XYSCSS=420JPEG").unwrap();
        assert_eq!((h.width, h.height, h.chroma, h.range), (320, 180, Chroma::C420, YuvRange::Limited));
        assert_eq!(h.fps, Some(25.0));
        assert_eq!(h.frame_bytes(), 320 * 180 * 3 / 2);
        let h = Header::parse("YUV4MPEG2 W5 H3 F30000:1001 C444 XCOLORRANGE=FULL").unwrap();
        assert_eq!((h.chroma, h.range, h.frame_bytes()), (Chroma::C444, YuvRange::Full, 45));
        assert!((h.fps.unwrap() - 29.97).abs() < 0.01);
        // Odd sizes round chroma up.
        assert_eq!(Header::parse("YUV4MPEG2 W5 H3").unwrap().frame_bytes(), 15 + 2 * 3 * 2);
    }

    #[test]
    fn rejects_malformed_headers() {
        let err = |s: &str| Header::parse(s).unwrap_err().to_string();
        assert!(err("YUV4MPEG W320 H180").contains("not a YUV4MPEG2"));
        assert!(err("YUV4MPEG2 H180").contains("width"));
        assert!(err("YUV4MPEG2 W320").contains("height"));
        assert!(err("YUV4MPEG2 W0 H180").contains("invalid width"));
        assert!(err("YUV4MPEG2 Wabc H180").contains("invalid width"));
        assert!(err("YUV4MPEG2 W320 H180 C422").contains("C422"));
        assert!(err("YUV4MPEG2 W320 H180 C420p10").contains("C420p10"));
        assert!(err("YUV4MPEG2 W320 H180 Q7").contains("Q7"));
        // Non-ASCII tokens used to slice inside a character and panic.
        assert!(err("YUV4MPEG2 W320 H180 é").contains("unknown header field"));
        assert!(err("YUV4MPEG2 W320 H180 €x").contains("unknown header field"));
        assert!(err("YUV4MPEG2 W16384 H16384").contains("over the limit"));
        assert!(err("YUV4MPEG2 W32768 H16").contains("invalid width"));
    }
}
