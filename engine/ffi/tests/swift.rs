//! The iOS wrapper (`ios/Sources/FrameCache/FrameCache.swift`) cannot be compiled here (no
//! Swift toolchain): this checks what can be checked without one. Every C function it calls is
//! declared in the committed header, with as many arguments as the header's declaration takes.

use std::collections::BTreeMap;
use std::path::Path;

/// The text between the parenthesis opening at `open` and its match, or `None` if unbalanced.
fn enclosed(text: &str, open: usize) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Arguments in a list: commas outside nested brackets and closures, plus one (none when empty
/// or `void`).
fn count_args(list: &str) -> usize {
    let list = list.trim();
    if list.is_empty() || list == "void" {
        return 0;
    }
    let mut depth = 0usize;
    let mut n = 1;
    for c in list.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => n += 1,
            _ => {}
        }
    }
    n
}

/// `fc_*` calls (or declarations) in `text`: name to the argument counts seen.
fn calls(text: &str) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut at = 0;
    while let Some(i) = text[at..].find("fc_").map(|i| at + i) {
        at = i + 3;
        if text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name_len = text[i..].find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(0);
        let name = &text[i..i + name_len];
        if text[i + name_len..].starts_with('(') {
            let args = enclosed(text, i + name_len).unwrap_or_else(|| panic!("{name}: unbalanced parentheses"));
            out.entry(name.to_owned()).or_default().push(count_args(args));
        }
    }
    out
}

#[test]
fn swift_wrapper_calls_what_the_header_declares() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(dir.join("include/framecache.h")).unwrap();
    let swift = std::fs::read_to_string(dir.join("../../ios/Sources/FrameCache/FrameCache.swift")).unwrap();
    let declared = calls(&header);
    let called = calls(&swift);
    assert!(called.len() >= 10, "{called:?}");
    for (name, counts) in &called {
        let want = declared.get(name).unwrap_or_else(|| panic!("FrameCache.swift calls {name}, not in the header"));
        for n in counts {
            assert_eq!(n, &want[0], "FrameCache.swift calls {name} with {n} arguments; the header takes {}", want[0]);
        }
    }
    // The wrapper covers the product: bundles and every head accessor.
    for name in ["fc_engine_create_bundle", "fc_engine_head_status", "fc_engine_boxes", "fc_engine_keypoints"] {
        assert!(called.contains_key(name), "FrameCache.swift does not call {name}");
    }
}
