//! `framecache compile`: a model file and its sidecar into one plan file
//! ([`framecache::import::plan_file`], `docs/plan-format.md`), or a bundle manifest and every
//! file it names into one bundle file ([`framecache::model::file`]): the formats the phone
//! library loads without an ONNX parser.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    /// The model: ONNX, TFLite, int8 or graph file; with `--bundle`, a bundle manifest.
    pub model: PathBuf,
    /// MODEL is a bundle manifest: write one bundle file with it and every file it names
    /// (models as graph files, labels as text).
    #[arg(long, conflicts_with_all = ["sidecar", "input_size"])]
    pub bundle: bool,
    /// Its sidecar (default: MODEL.toml beside it, then in assets/models/).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// `WxH` for a model with dynamic spatial input dims, or an ONNX model run at another size
    /// than its own (default: the sidecar's `input_size`).
    #[arg(long, value_parser = crate::args::parse_size)]
    pub input_size: Option<(usize, usize)>,
    /// The plan file to write (written whole or not at all).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: CompileArgs) -> Result<()> {
    let same = |a: &std::path::Path, b: &std::path::Path| {
        a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    };
    if same(&args.model, &args.out) || args.sidecar.as_deref().is_some_and(|s| same(s, &args.out)) {
        bail!("--out {} would overwrite an input", args.out.display());
    }
    let description = format!("framecache compile {}", args.model.display());
    let bytes = if args.bundle {
        framecache::model::file::compile(&args.model, &crate::bundle::model_dirs(&[]), &description)?
    } else {
        framecache::import::plan_file::compile(
            &args.model,
            args.sidecar.as_deref(),
            &crate::model::sidecar_dirs(),
            args.input_size,
            &description,
        )?
    };
    framecache::files::write_atomic(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}
