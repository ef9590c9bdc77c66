//! What the commands share: engine options, mode parsing, and where the project's bundled
//! model, clip and scripts are.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use framecache::{Mode, ModelConfig};

/// Engine options shared by `run`, `bench` and `demo`.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Tile size in input pixels (8-32).
    #[arg(long, default_value_t = framecache::exec::DEFAULT_TILE)]
    pub tile: usize,
    /// Worker threads (default: all cores); bench gives its baselines as many.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Recompute everything every N frames, or `never` (drift control; default: every 16
    /// frames in the approximate modes, never in exact mode).
    #[arg(long, value_parser = parse_refresh)]
    pub refresh: Option<Refresh>,
    /// Preprocessing sidecar (TOML) to use instead of each model's own `<file name>.toml`.
    #[arg(long)]
    pub preprocess: Option<PathBuf>,
    /// Input size WxH for models with dynamic spatial input dims, or for an ONNX model run at
    /// another size than its own (overrides the sidecar's `input_size`).
    #[arg(long, value_parser = parse_size)]
    pub input_size: Option<(usize, usize)>,
    /// Turn off the adaptive bypass (by default, when a cached frame costs more than a dense
    /// one, the next frames are computed densely; see `Session`), so that every frame takes
    /// the cached path.
    #[arg(long)]
    pub no_bypass: bool,
}

impl EngineArgs {
    /// Session options for `mode` with these settings.
    pub fn session_options(&self, mode: Mode) -> framecache::SessionOptions {
        framecache::SessionOptions {
            mode,
            tile: self.tile,
            threads: self.threads,
            refresh_interval: refresh_interval(self.refresh, mode),
            bypass: !self.no_bypass,
            ..Default::default()
        }
    }
}

/// `--refresh`: how often a session computes a frame densely whatever the cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    Never,
    Every(u32),
}

/// `never`, or a number of frames (at least 1).
pub fn parse_refresh(s: &str) -> Result<Refresh, String> {
    match s.trim() {
        "never" => Ok(Refresh::Never),
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Refresh::Every(n)),
            _ => Err(format!("'{s}' is neither `never` nor a number of frames (at least 1)")),
        },
    }
}

/// The refresh interval of a session in `mode`: `refresh` where the user gave one, else the
/// mode's default ([`Mode::default_refresh`]).
pub fn refresh_interval(refresh: Option<Refresh>, mode: Mode) -> Option<u32> {
    match refresh {
        None => mode.default_refresh(),
        Some(Refresh::Never) => None,
        Some(Refresh::Every(n)) => Some(n),
    }
}

/// `WxH`, e.g. `320x240`.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("'{s}' is not WxH (e.g. 320x240)"))?;
    let side = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match (side(w), side(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("'{s}' is not WxH with positive whole numbers (e.g. 320x240)")),
    }
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse().map_err(|e: framecache::Error| e.to_string())
}

/// A file or folder of the project: `$env` when set, else `relative` in the workspace this
/// binary was built from, else in the current directory; the first that `accept` takes.
pub fn project_path(env: &str, relative: &str, accept: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let candidates = [
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)),
        std::env::current_dir().ok().map(|d| d.join(relative)),
    ];
    candidates.into_iter().flatten().find(|p| accept(p))
}

/// The project's `assets/` folder (or `$FRAMECACHE_ASSETS`).
pub fn assets_dir() -> Result<PathBuf> {
    project_path("FRAMECACHE_ASSETS", "assets", |p| p.join("models").is_dir())
        .context("cannot find the bundled assets/ folder; pass --model and --clip, or set FRAMECACHE_ASSETS")
}

pub fn default_model() -> Result<PathBuf> {
    Ok(assets_dir()?.join("models/mobilenet_v2.onnx"))
}

pub fn default_clip() -> Result<PathBuf> {
    Ok(assets_dir()?.join("clips/static_coin_motion"))
}

/// `path` with `ext` appended to its file name (`m.safetensors` + `.json`).
pub fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// `to` relative to the folder of `from` where it is below it, else absolute.
pub fn relative(to: &Path, from: &Path) -> String {
    let to = to.canonicalize().unwrap_or_else(|_| to.to_owned());
    let dir = from.parent().and_then(|d| d.canonicalize().ok());
    match dir.as_deref().and_then(|d| to.strip_prefix(d).ok()) {
        Some(r) => r.display().to_string(),
        None => to.display().to_string(),
    }
}

/// The sidecar `path` (parsed as `config`) of `model`, for a model that `framecache COMMAND`
/// writes at `out`: its labels file named relative to `out`'s folder (or absolute).
pub fn sidecar_for(path: &Path, config: &ModelConfig, model: &Path, out: &Path, command: &str) -> Result<String> {
    let text = framecache::files::read_text(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    if let Some(labels) = config.labels_path(model) {
        table.insert("labels".into(), toml::Value::String(relative(&labels, out)));
    }
    Ok(format!("# framecache {command}: the sidecar of {}\n{}", model.display(), toml::to_string(&table)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_defaults_to_the_modes_own_and_never_turns_it_off() {
        assert_eq!(parse_refresh("never"), Ok(Refresh::Never));
        assert_eq!(parse_refresh("16"), Ok(Refresh::Every(16)));
        assert!(parse_refresh("0").is_err() && parse_refresh("-3").is_err() && parse_refresh("often").is_err());
        let approximate = framecache::exec::DEFAULT_MODE;
        assert_eq!(refresh_interval(None, approximate), Some(framecache::exec::DEFAULT_REFRESH));
        assert_eq!(refresh_interval(None, Mode::Exact), None);
        assert_eq!(refresh_interval(Some(Refresh::Never), approximate), None);
        assert_eq!(refresh_interval(Some(Refresh::Every(5)), Mode::Exact), Some(5));
    }
}
