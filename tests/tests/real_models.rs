//! The engine against tract and against itself on the real models and clips in
//! `../shared/data`. Skipped, with a message, when the data is absent.

use framecache::{Plan, Session, SessionOptions};
use framecache_tests::*;

#[test]
fn run_full_matches_tract_on_real_frames() -> anyhow::Result<()> {
    let Some(data) = shared_data_or_skip("run_full_matches_tract_on_real_frames") else { return Ok(()) };
    let frames = clip(&data, "handheld_cockatoo")?;
    for (path, pre) in core_models(&data) {
        let plan = Plan::from_onnx(&path, pre)?;
        let tract = TractModel::load(&path)?;
        let mut session = Session::new(plan.clone(), SessionOptions { threads: Some(2), ..Default::default() })?;
        let s = plan.graph().input_shape();
        for f in [&frames[0], &frames[75], &frames[149]] {
            let ours = session.run_full(&f.as_frame())?;
            let theirs = tract.run_nhwc(session.activation(0), s.h, s.w, s.c)?;
            assert_eq!(ours.len(), theirs.len());
            for (o, t) in ours.iter().zip(&theirs) {
                let (d, scale) = max_abs_diff(&o.data, t);
                eprintln!("{}: {} max abs diff {d:.2e} (scale {scale:.2})", path.display(), o.name);
                assert!(
                    d <= 1e-4 * scale.max(1.0),
                    "{}: output {} differs from tract by {d} (scale {scale})",
                    path.display(),
                    o.name
                );
            }
        }
    }
    Ok(())
}
