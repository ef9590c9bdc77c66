//! Ground truth for classifier accuracy: a clip's `labels.json`, or reference top-5 tables
//! (`<anything><clip>.top5.tsv`, as in `../shared/data/reference`).
//!
//! `labels.json` is either `{"class": 89}` (every frame shows class 89) or
//! `{"frames": {"frame_0001.png": 89, ...}}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The expected top-1 class per frame.
#[derive(Debug, Clone)]
pub struct Reference {
    pub source: PathBuf,
    every_frame: Option<usize>,
    by_name: HashMap<String, usize>,
}

impl Reference {
    /// The expected class of a frame, by file name.
    pub fn expected(&self, frame_name: &str) -> Option<usize> {
        self.every_frame.or_else(|| self.by_name.get(frame_name).copied())
    }

    /// A short description for tables: the file name.
    pub fn label(&self) -> String {
        self.source.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

/// Finds labels for `clip_name` and `model` in `dirs`: `labels.json` inside the clip folder,
/// `<clip>.labels.json`, then a `*<clip>.top5.tsv` with a `<model>_top5` column.
pub fn find(clip_path: &Path, clip_name: &str, model: &str, dirs: &[PathBuf]) -> Result<Option<Reference>> {
    let inside = clip_path.join("labels.json");
    if inside.is_file() {
        return load_labels_json(&inside).map(Some);
    }
    for dir in dirs {
        let json = dir.join(format!("{clip_name}.labels.json"));
        if json.is_file() {
            return load_labels_json(&json).map(Some);
        }
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let suffix = format!("{clip_name}.top5.tsv");
        let mut tsvs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(&suffix)))
            .collect();
        tsvs.sort();
        for tsv in tsvs {
            if let Some(r) = load_top5_tsv(&tsv, model)? {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}

pub fn load_labels_json(path: &Path) -> Result<Reference> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let class = |v: &serde_json::Value, what: &str| {
        v.as_u64().map(|c| c as usize).with_context(|| format!("{}: {what} must be a class index", path.display()))
    };
    let mut r = Reference { source: path.to_owned(), every_frame: None, by_name: HashMap::new() };
    if let Some(c) = v.get("class") {
        r.every_frame = Some(class(c, "\"class\"")?);
    } else if let Some(frames) = v.get("frames").and_then(|f| f.as_object()) {
        for (name, c) in frames {
            r.by_name.insert(name.clone(), class(c, &format!("frames.{name}"))?);
        }
    } else {
        bail!("{}: expected {{\"class\": N}} or {{\"frames\": {{name: N}}}}", path.display());
    }
    Ok(r)
}

/// Reads the `<model>_top5` column of a reference table; `None` when the table has no such
/// column.
pub fn load_top5_tsv(path: &Path, model: &str) -> Result<Option<Reference>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let Some(col) = header.iter().position(|h| *h == format!("{model}_top5")) else { return Ok(None) };
    let mut by_name = HashMap::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split('\t').collect();
        let top1 = cells
            .get(col)
            .and_then(|c| c.split_whitespace().next())
            .and_then(|c| c.parse::<usize>().ok())
            .with_context(|| format!("{} line {}: no class in column {model}_top5", path.display(), n + 2))?;
        by_name.insert(cells[0].to_owned(), top1);
    }
    Ok(Some(Reference { source: path.to_owned(), every_frame: None, by_name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tsv_columns_and_labels_json() {
        let dir = std::env::temp_dir().join(format!("framecache-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tsv = dir.join("dev__clip.top5.tsv");
        std::fs::write(
            &tsv,
            "frame\ta_top5\ta_p1\tb_top5\nf1.png\t3 4 5 6 7\t0.5\t9 1 2 3 4\nf2.png\t8 1 2 3 4\t0.2\t7 1 2 3 4\n",
        )
        .unwrap();
        let r = find(&dir.join("clip"), "clip", "b", std::slice::from_ref(&dir)).unwrap().unwrap();
        assert_eq!((r.expected("f1.png"), r.expected("f2.png"), r.expected("f3.png")), (Some(9), Some(7), None));
        assert!(find(&dir.join("clip"), "clip", "c", std::slice::from_ref(&dir)).unwrap().is_none());

        let json = dir.join("clip.labels.json");
        std::fs::write(&json, r#"{"class": 89}"#).unwrap();
        assert_eq!(
            find(&dir.join("clip"), "clip", "c", std::slice::from_ref(&dir)).unwrap().unwrap().expected("x"),
            Some(89)
        );
        std::fs::write(&json, r#"{"frames": {"f1.png": 2}}"#).unwrap();
        let r = load_labels_json(&json).unwrap();
        assert_eq!((r.expected("f1.png"), r.expected("f2.png")), (Some(2), None));
        std::fs::write(&json, r#"{"class": "cockatoo"}"#).unwrap();
        assert!(load_labels_json(&json).unwrap_err().to_string().contains("class index"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
