//! `framecache inspect`: the imported graph as a table.

use std::path::PathBuf;

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Result;
use clap::Args;
use framecache::graph::Op;
use framecache::Plan;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// ONNX model (default: the bundled MobileNetV2).
    pub model: Option<PathBuf>,
    /// Input size WxH for a model with dynamic spatial input dims (or an ONNX model run at
    /// another size than its own).
    #[arg(long, value_parser = crate::args::parse_size)]
    pub input_size: Option<(usize, usize)>,
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let model = match args.model {
        Some(m) => m,
        None => crate::args::default_model()?,
    };
    let options = framecache::import::ImportOptions { input_size: args.input_size, ..Default::default() };
    let plan = Plan::new(framecache::import::load_model(&model, options)?, Default::default())?;
    let graph = plan.graph();
    let geo = plan.geometry();
    let total = plan.total_macs().max(1);
    let mut out = String::new();
    writeln!(
        out,
        "model {}  input '{}' {}  nodes {}",
        model.display(),
        graph.input_name,
        graph.input_shape(),
        graph.nodes.len()
    )?;
    writeln!(
        out,
        "{:>4}  {:<36} {:<14} {:<12} {:<22} {:>7} {:>9} {:>10} {:>6}",
        "#", "name", "op", "out HxWxC", "kernel/stride/pad", "stride", "RF", "MMACs", "%"
    )?;
    for (i, n) in graph.nodes.iter().enumerate() {
        let detail = match &n.op {
            Op::Conv(c) => {
                let w = &c.window;
                let int8 = if c.quant.is_some() { " int8" } else { "" };
                format!("{}x{}/{} d{} g{} p{:?}{int8}", w.kh, w.kw, w.sh, w.dh, c.groups, w.pad)
            }
            Op::ConvTranspose(c) => format!("{}x{}/{} p{:?}", c.window.kh, c.window.kw, c.window.sh, c.window.pad),
            Op::Pool { window: w, .. } => format!("{}x{}/{} p{:?}", w.kh, w.kw, w.sh, w.pad),
            // Expanded channels, then the depthwise window; which pointwise parts are int8.
            Op::Bottleneck(b) => {
                let w = &b.depthwise.window;
                let e = b.expand.as_ref().is_some_and(|e| e.quant.is_some());
                let int8 = match (e, b.project.quant.is_some()) {
                    (true, true) => " int8 e+p",
                    (true, false) => " int8 e",
                    (false, true) => " int8 p",
                    (false, false) => "",
                };
                format!("e{} {}x{}/{} p{:?}{int8}", b.expanded(), w.kh, w.kw, w.sh, w.pad)
            }
            _ => String::new(),
        };
        let act = match n.op.activation() {
            framecache::graph::Activation::Identity => String::new(),
            a => format!("+{a:?}").split([' ', '{']).next().unwrap_or_default().to_owned(),
        };
        let inputs: Vec<String> = n.inputs.iter().map(|i| i.to_string()).collect();
        let name = if inputs.is_empty() { n.name.clone() } else { format!("{} <- {}", n.name, inputs.join(",")) };
        let macs = n.macs(graph);
        writeln!(
            out,
            "{i:>4}  {:<36} {:<14} {:<12} {:<22} {:>7} {:>9} {:>10.2} {:>6.2}",
            truncate(&name, 36),
            format!("{}{act}", n.op.name()),
            n.shape.to_string(),
            detail,
            format_num(geo[i].stride.0),
            format_num(geo[i].receptive_field.0),
            macs as f64 / 1e6,
            100.0 * macs as f64 / total as f64
        )?;
    }
    writeln!(out, "total {:.1} MMACs per frame", plan.total_macs() as f64 / 1e6)?;
    let (int8, _) = crate::quantize::int8_share(&plan);
    if int8 > 0 {
        writeln!(out, "int8 {:.1} MMACs ({:.1}%)", int8 as f64 / 1e6, 100.0 * int8 as f64 / total as f64)?;
    }
    let values = plan.activation_values();
    writeln!(
        out,
        "activations {values} values ({:.1} MiB of f32, one buffer per node; limit {} values)",
        values as f64 * 4.0 / (1 << 20) as f64,
        framecache::graph::MAX_PLAN_VALUES
    )?;
    for o in &graph.outputs {
        writeln!(out, "output '{}' {:?} from node {}", o.name, o.onnx_shape, o.node)?;
    }
    // A closed pipe (`| head`) is not an error worth reporting.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let tail: String = s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}

fn format_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.2}")
    }
}
