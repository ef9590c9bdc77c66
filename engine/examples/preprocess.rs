//! Time of the preprocessing resamplers (frame to model input), per frame size:
//! `cargo run --release -p framecache --example preprocess [FILTER]`.
//! Each resampler turns an RGB frame into a 224x224 input, as the classifiers' sidecars ask
//! (`pil` and `area`: resize the shorter side to 256, centre crop) and as MediaPipe models do
//! (`mediapipe`: stretched); the median of 2000 calls is printed. FILTER keeps the rows whose
//! name starts with it.

use std::time::Instant;

use framecache::graph::Shape;
use framecache::{Fit, Frame, Preprocess, Resample};

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let input = Shape::new(224, 224, 3);
    let frames: Vec<(usize, usize, Vec<u8>)> = [(320, 240), (640, 480), (224, 224)]
        .into_iter()
        .map(|(w, h)| (w, h, (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect()))
        .collect();
    let crop = Preprocess::tf_symmetric();
    let resamplers = [
        ("pil", Preprocess { resample: Resample::Pil, ..crop.clone() }),
        ("area", crop),
        ("mediapipe", Preprocess { fit: Fit::Stretch, resample: Resample::MediaPipe, ..Preprocess::signed_unit() }),
    ];
    let mut out = Vec::new();
    let mut normalized = vec![0.0f32; input.len()];
    for (name, p) in &resamplers {
        for (w, h, px) in &frames {
            let row = format!("{name} {w}x{h}");
            if !row.starts_with(&filter) {
                continue;
            }
            let frame = Frame::rgb(*w, *h, px);
            let mut times: Vec<f64> = (0..2000)
                .map(|_| {
                    let t = Instant::now();
                    p.resample(frame, input, &mut out);
                    p.normalize(&out, &mut normalized);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!("{row}: {:.3} ms (resample and normalize, median of {})", times[times.len() / 2], times.len());
        }
    }
}
