//! The Y4M reader on files written by ffmpeg (see tests/data/README.md), checked against the
//! PNG frames they were made from, and on damaged copies of them.

use std::path::{Path, PathBuf};

use framecache_app::clip::{decode_image, Clip, RgbFrame};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn png(i: usize) -> RgbFrame {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../assets/clips/static_coin_motion/frame_{i:04}.png"));
    decode_image(&p).unwrap()
}

/// Mean and largest absolute difference per sample.
fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a.iter().zip(b).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    (sum as f64 / a.len() as f64, a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap())
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("framecache-y4m-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn ffmpeg_files_decode_to_their_source_frames() {
    // Measured: mean 0.37-0.48, max 2-4 grey levels. 4:2:0 loses chroma detail at edges.
    for (file, frames, max_limit) in [("coin_420.y4m", 3, 6), ("coin_420_full.y4m", 1, 6), ("coin_444.y4m", 1, 3)] {
        let clip = Clip::open(&data(file)).unwrap();
        assert_eq!(clip.len(), frames, "{file}");
        assert_eq!(clip.fps(), Some(25.0));
        for i in 0..frames {
            let f = clip.decode(i).unwrap();
            assert_eq!((f.width, f.height), (320, 180));
            let (mean, max) = diff(&f.data, &png(i + 1).data);
            eprintln!("{file} frame {}: mean error {mean:.2}, max {max}", i + 1);
            assert!(mean < 1.0 && max <= max_limit, "{file} frame {}: mean error {mean:.2}, max {max}", i + 1);
        }
    }
}

#[test]
fn mono_decodes_to_grey_luma() {
    let f = Clip::open(&data("coin_mono.y4m")).unwrap().decode(0).unwrap();
    let source = png(1);
    let luma: Vec<u8> = source
        .data
        .chunks_exact(3)
        .flat_map(|p| {
            let l = (0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).round() as u8;
            [l; 3]
        })
        .collect();
    let (mean, max) = diff(&f.data, &luma);
    assert!(mean < 1.0 && max <= 3, "mean {mean:.2}, max {max}");
}

#[test]
fn damaged_files_are_errors_naming_file_and_frame() {
    let good = std::fs::read(data("coin_420.y4m")).unwrap();

    let truncated = scratch("truncated.y4m");
    std::fs::write(&truncated, &good[..good.len() - 1000]).unwrap();
    let e = format!("{:#}", Clip::open(&truncated).unwrap_err());
    assert!(e.contains("truncated.y4m") && e.contains("frame 3 is truncated"), "{e}");

    let frame_bytes = 320 * 180 * 3 / 2;
    let header_len = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut bad_marker = good.clone();
    let second = header_len + 6 + frame_bytes;
    bad_marker[second..second + 5].copy_from_slice(b"FRAXE");
    let path = scratch("marker.y4m");
    std::fs::write(&path, &bad_marker).unwrap();
    let e = format!("{:#}", Clip::open(&path).unwrap_err());
    assert!(e.contains("marker.y4m") && e.contains("frame 2: expected a FRAME header"), "{e}");

    for (name, header, expect) in [
        ("noheight.y4m", "YUV4MPEG2 W320 C420jpeg\n", "no height"),
        ("c422.y4m", "YUV4MPEG2 W320 H180 C422\n", "C422"),
        ("notyuv.y4m", "\u{89}PNG\r\n", "not a YUV4MPEG2 file"),
        ("empty.y4m", "YUV4MPEG2 W320 H180\n", "holds no frames"),
    ] {
        let path = scratch(name);
        std::fs::write(&path, header).unwrap();
        let e = format!("{:#}", Clip::open(&path).unwrap_err());
        assert!(e.contains(name) && e.contains(expect), "{name}: {e}");
    }
}
