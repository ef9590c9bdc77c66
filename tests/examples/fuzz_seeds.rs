//! Writes the seed inputs of the fuzz targets (`tests/src/fuzz.rs`) into `fuzz/corpus/<target>/`:
//!
//! ```text
//! cargo run --release -p framecache-tests --example fuzz_seeds -- fuzz/corpus
//! ```
//!
//! Seeds are small valid inputs of each format; libFuzzer grows the corpus from them, and
//! `cargo fuzz cmin` keeps it small before it is committed.

use std::path::Path;

use framecache_tests::onnx::{f32_tensor, ints, zoo, Onnx};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(name), bytes)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into());
    let dir = Path::new(&dir);
    let root = framecache_tests::project_root();

    // onnx: the every-op model, a plain convolution, a transposed convolution.
    write(dir, "onnx", "seed_zoo.onnx", &zoo().bytes())?;
    let mut conv = Onnx::new(3, 8, 8);
    conv.conv("x", "y", 3, 4, 3, vec![ints("pads", &[1, 1, 1, 1]), ints("strides", &[2, 2])]).output("y");
    write(dir, "onnx", "seed_conv.onnx", &conv.bytes())?;
    let mut ct = Onnx::new(3, 4, 4);
    ct.init(f32_tensor("w", &[3, 2, 3, 3], vec![0.1; 54]))
        .node("ConvTranspose", &["x", "w"], "y", vec![ints("strides", &[2, 2]), ints("pads", &[1, 1, 1, 1])])
        .output("y");
    write(dir, "onnx", "seed_convtranspose.onnx", &ct.bytes())?;

    // tflite: a convolution with a fused ReLU and a logistic, built with the schema's builders.
    write(dir, "tflite", "seed_conv.tflite", &framecache_tests::tflite::conv_model())?;

    // y4m: 4:2:0 with two frames, 4:4:4 full range, greyscale.
    let frame = |n: usize| [b"FRAME\n".as_slice(), &(0..n).map(|i| (i * 37 % 256) as u8).collect::<Vec<_>>()].concat();
    let y420 = [b"YUV4MPEG2 W4 H4 F25:1 Ip A1:1 C420jpeg\n".as_slice(), &frame(24), &frame(24)].concat();
    write(dir, "y4m", "seed_420.y4m", &y420)?;
    let y444 = [b"YUV4MPEG2 W3 H2 F30000:1001 C444 XCOLORRANGE=FULL\n".as_slice(), &frame(18)].concat();
    write(dir, "y4m", "seed_444.y4m", &y444)?;
    write(dir, "y4m", "seed_mono.y4m", &[b"YUV4MPEG2 W5 H3 Cmono\n".as_slice(), &frame(15)].concat())?;

    // png_clip: a small RGB PNG, an RGBA PNG and a JPEG.
    let rgb = image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([(x * 30) as u8, (y * 50) as u8, 128]));
    let encode = |img: image::DynamicImage, format: image::ImageFormat| -> anyhow::Result<Vec<u8>> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format)?;
        Ok(out.into_inner())
    };
    write(dir, "png_clip", "seed_rgb.png", &encode(rgb.clone().into(), image::ImageFormat::Png)?)?;
    let rgba = image::DynamicImage::ImageRgb8(rgb.clone()).to_rgba8();
    write(dir, "png_clip", "seed_rgba.png", &encode(rgba.into(), image::ImageFormat::Png)?)?;
    write(dir, "png_clip", "seed.jpg", &encode(rgb.into(), image::ImageFormat::Jpeg)?)?;

    // toml: the bundled sidecars and bundle manifests.
    for sub in ["assets/models", "assets/bundles"] {
        for e in std::fs::read_dir(root.join(sub))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let name = format!("seed_{}", p.file_name().unwrap().to_string_lossy());
                write(dir, "toml", &name, &std::fs::read(&p)?)?;
            }
        }
    }

    // abi_push: width, height, stride, stride2, format, rotation (little-endian u32s), pixels.
    let push = |w: u32, h: u32, s: u32, s2: u32, format: u32, rot: u32| {
        let mut b: Vec<u8> = [w, h, s, s2, format, rot].iter().flat_map(|v| v.to_le_bytes()).collect();
        b.extend((0..64).map(|i| (i * 29 % 256) as u8));
        b
    };
    write(dir, "abi_push", "seed_rgba.bin", &push(8, 6, 32, 0, 0, 0))?;
    write(dir, "abi_push", "seed_bgra_rot90.bin", &push(9, 7, 40, 1, 1, 1))?;
    write(dir, "abi_push", "seed_i420.bin", &push(8, 8, 8, 4, 2, 2))?;
    write(dir, "abi_push", "seed_nv12.bin", &push(10, 6, 12, 10, 3, 3))?;
    println!("seeds written under {}", dir.display());
    Ok(())
}
