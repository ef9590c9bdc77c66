//! `framecache demo` in a real window under Xvfb (Mesa, glow): it plays the bundled clip, the
//! frame counter advances, the screenshot is a picture, and the reuse overlay changes pixels.
//!
//! Needs `xvfb-run` (Debian: xvfb xauth, plus libgl1-mesa-dri libegl1). Without it the test
//! says so and passes, unless `FRAMECACHE_REQUIRE_XVFB=1` (set by `.ci/run`) makes it fail.
#![cfg(feature = "gui")]

use std::path::Path;
use std::process::Command;

fn xvfb_available() -> bool {
    Command::new("xvfb-run").arg("--help").output().is_ok()
}

#[test]
fn demo_window_plays_the_bundled_clip_and_draws_the_overlay() {
    if !xvfb_available() {
        assert!(std::env::var_os("FRAMECACHE_REQUIRE_XVFB").is_none(), "xvfb-run is required here but missing");
        eprintln!("skipped: xvfb-run not found (apt-get install xvfb xauth libgl1-mesa-dri)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("framecache-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("demo.png");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/clips/static_coin_motion");
    let out = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(env!("CARGO_BIN_EXE_framecache"))
        .args(["demo", "--threads", "1", "--frames", "12", "--source"])
        .arg(&clip)
        .arg("--screenshot")
        .arg(&shot)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .output()
        .expect("running xvfb-run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);

    // The frame counter advanced to at least the requested frames.
    let processed: u64 = stdout
        .split("processed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    assert!(processed >= 12, "{stdout}");
    assert!(stdout.contains("static_coin_motion"), "{stdout}");

    let with = image::open(&shot).expect("screenshot decodes").to_rgb8();
    let toggled = image::open(dir.join("demo.overlay-toggled.png")).expect("second screenshot decodes").to_rgb8();
    assert!(with.width() >= 800 && with.height() >= 500, "{}x{}", with.width(), with.height());
    assert_eq!(with.dimensions(), toggled.dimensions());

    // Not blank: many distinct colours and a real spread of brightness.
    let mut colours: Vec<[u8; 3]> = with.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 500, "only {} colours: blank window?", colours.len());
    let grey: Vec<f64> = with.pixels().map(|p| p.0.iter().map(|&v| v as f64).sum::<f64>() / 3.0).collect();
    let mean = grey.iter().sum::<f64>() / grey.len() as f64;
    let sd = (grey.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / grey.len() as f64).sqrt();
    assert!(sd > 20.0, "brightness spread {sd:.1}: blank window?");

    // The overlay toggled pixels: the shots differ, almost all of them in the video area (the
    // pipeline was paused, so the statistics are the same in both; only the overlay's
    // checkbox changes in the side panel).
    let changed: Vec<(u32, u32)> = with
        .enumerate_pixels()
        .filter(|(x, y, p)| p.0 != toggled.get_pixel(*x, *y).0)
        .map(|(x, y, _)| (x, y))
        .collect();
    let total = (with.width() * with.height()) as usize;
    assert!(changed.len() > total / 20, "overlay changed only {} of {total} pixels", changed.len());
    let right_panel = with.width() - 300;
    let in_video = changed.iter().filter(|&&(x, _)| x < right_panel).count();
    assert!(in_video * 100 >= changed.len() * 98, "{in_video} of {} changed pixels in the video area", changed.len());
    let _ = std::fs::remove_dir_all(&dir);
}
