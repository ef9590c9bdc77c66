//! Reading the files a user names (models, their external data, sidecars, manifests, labels)
//! with a size bound. A FIFO, a device such as `/dev/zero` or a directory is refused before it
//! is opened, so that it neither blocks for ever nor is read until memory runs out.

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// Largest model file (and external-data file) read: 2 GiB, protobuf's own limit.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;
/// Largest text file read: sidecars, manifests, label lists (16 MiB).
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

/// Checks that `path` is a regular file (after symlinks) of at most `limit` bytes, and returns
/// its size.
pub fn check_regular(path: &Path, limit: u64) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(Error::new(ErrorKind::InvalidInput, format!("{} is {what}", path.display())));
    }
    if meta.len() > limit {
        return Err(too_big(path, limit));
    }
    Ok(meta.len())
}

fn too_big(path: &Path, limit: u64) -> Error {
    Error::new(ErrorKind::InvalidData, format!("{} is larger than the limit of {limit} bytes", path.display()))
}

/// Reads a regular file of at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let size = check_regular(path, limit)?;
    let mut buf = Vec::with_capacity(size as usize);
    // The file may grow between the check and the read: never read past the limit.
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_big(path, limit));
    }
    Ok(buf)
}

/// Reads a UTF-8 text file of at most [`MAX_TEXT_BYTES`].
pub fn read_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read(path, MAX_TEXT_BYTES)?)
        .map_err(|_| Error::new(ErrorKind::InvalidData, format!("{} is not UTF-8 text", path.display())))
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it, then
/// renamed over it, so that a failed write leaves no partial file (and an existing file intact).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no file name"))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_directories_and_oversized_files() {
        let dir = std::env::temp_dir().join(format!("framecache-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read(&dir, 10).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        if Path::new("/dev/zero").exists() {
            let e = read(Path::new("/dev/zero"), MAX_MODEL_BYTES).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        let fifo = dir.join("fifo");
        if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
            // Opening a FIFO with no writer would block: it is refused before it is opened.
            let e = read(&fifo, MAX_MODEL_BYTES).unwrap_err();
            assert!(e.to_string().contains("FIFO"), "{e}");
        }
        let f = dir.join("eleven");
        std::fs::write(&f, b"hello world").unwrap();
        assert_eq!(read(&f, 11).unwrap(), b"hello world");
        assert!(read(&f, 10).unwrap_err().to_string().contains("larger than the limit of 10 bytes"));
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_text(&f).unwrap_err().to_string().contains("not UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
