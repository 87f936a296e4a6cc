//! The module layering DESIGN.md describes, enforced: every `crate::` path in
//! `src/` (outside the CLI, which sits on top of everything) names a module
//! of the importer's rank or below. A new top-level module must be given a
//! rank here (and a row in DESIGN.md's module table).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by rank, lowest first; data flows upward. Mirrors
/// DESIGN.md's module table.
const RANKS: &[&[&str]] = &[
    &["error", "units", "timestamp"],
    &[
        "digest",
        "durable",
        "platform",
        "safefs",
        "tarstream",
        "mount",
        "outfile",
        "startup",
        "download",
    ],
    &["reference", "manifest", "store", "index", "auth", "export"],
    &["registry", "unpack", "snapshot", "records"],
    &["lookup", "gc", "newlayer"],
    &["rootfs", "runtime"],
    &["container"],
    &["images", "pull", "push", "check", "login", "run", "commit", "archive"],
    &["system"],
];

/// Items of the crate root (lib.rs) and the rank of what they are made of.
const ROOT_ITEMS: &[(&str, usize)] = &[
    ("Error", 0),
    ("Result", 0),
    ("DEFAULT_ROOT", 0),
    // The store, the index and the snapshotter of one root.
    ("Mocker", 3),
];

/// Files that are not modules of the layering: the crate root and the CLI.
fn exempt(relative: &Path) -> bool {
    relative == Path::new("lib.rs") || relative == Path::new("main.rs") || relative.starts_with("cli")
}

fn rank_of(name: &str) -> Option<usize> {
    RANKS
        .iter()
        .position(|rank| rank.contains(&name))
        .or_else(|| ROOT_ITEMS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `images/mod.rs` is `[images]`,
/// `images/list.rs` is `[images, list]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// `source` with comments and the contents of string and char literals
/// blanked, line structure kept: a path in a doc comment is no import.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let (mut i, mut in_string) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            match c {
                '\\' => i += 1,
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => {}
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        } else if let Some(len) = raw_string_len(&chars[i..]) {
            out.push_str("\"\"");
            out.extend(chars[i..i + len].iter().filter(|&&c| c == '\n'));
            i += len;
            continue;
        } else if c == '"' {
            in_string = true;
            out.push('"');
        } else if c == '\'' && chars.get(i + 1) == Some(&'\\') {
            // '\n', '\'', '\u{..}': to the quote after the escaped character.
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            out.push_str("''");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("''");
            i += 2; // 'x'
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// The length of the raw string literal (`r"…"`, `r#"…"#`, …) `s` starts
/// with, if it starts with one.
fn raw_string_len(s: &[char]) -> Option<usize> {
    if s.first() != Some(&'r') {
        return None;
    }
    let hashes = s[1..].iter().take_while(|&&c| c == '#').count();
    if s.get(1 + hashes) != Some(&'"') {
        return None;
    }
    let body = 2 + hashes;
    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    let end = (body..=s.len().saturating_sub(close.len())).find(|&j| s[j..j + close.len()] == close[..])?;
    Some(end + close.len())
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segments of the paths in a `{a, b::c, d::{e, f}}` group.
fn group_heads(s: &str) -> Vec<&str> {
    let (mut heads, mut depth, mut start) = (Vec::new(), 0, true);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => break,
            '}' => depth -= 1,
            ',' if depth == 1 => start = true,
            c if start && depth == 1 && (c.is_ascii_alphanumeric() || c == '_') => {
                heads.push(ident_at(&s[i..]));
                start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level items a line refers to: `crate::x`, `crate::{x, y::z}`.
/// (`super::` paths stay inside their module: none here climbs to the root.)
fn top_level_refs(line: &str) -> Vec<&str> {
    let mut refs = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let preceded = line[..at].chars().last();
        if preceded.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[at + "crate::".len()..];
        if rest.starts_with('{') {
            refs.extend(group_heads(rest));
        } else {
            refs.push(ident_at(rest));
        }
    }
    refs.retain(|r| !r.is_empty() && *r != "self");
    refs
}

/// Every reference from one top-level module to another: importer, target,
/// and where (file:line).
fn references(src: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        if exempt(relative) {
            continue;
        }
        let module = &module_path(relative)[0];
        let source = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_only(&source).lines().enumerate() {
            for target in top_level_refs(line) {
                if target != module {
                    let place = format!("src/{}:{}", relative.display(), n + 1);
                    found.push((module.clone(), target.to_string(), place));
                }
            }
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_one_above_it() {
    let mut errors = Vec::new();
    for (module, target, place) in references(&src_dir()) {
        match (rank_of(&module), rank_of(&target)) {
            (None, _) => errors.push(format!(
                "{place}: module `{module}` has no rank: add it to RANKS in tests/layering.rs and to DESIGN.md"
            )),
            (_, None) => errors.push(format!(
                "{place}: `crate::{target}` has no rank: add it to RANKS (or ROOT_ITEMS) in tests/layering.rs"
            )),
            (Some(from), Some(to)) if to > from => errors.push(format!(
                "{place}: `{module}` (rank {from}) imports `{target}` (rank {to}), which is above it"
            )),
            _ => {}
        }
    }
    assert!(errors.is_empty(), "upward or unranked imports:\n{}", errors.join("\n"));
}

#[test]
fn modules_of_one_rank_form_no_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, target, _) in references(&src_dir()) {
        graph.entry(module).or_default().insert(target);
    }
    fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> bool {
        graph
            .get(from)
            .into_iter()
            .flatten()
            .any(|next| next == to || (seen.insert(next.clone()) && reaches(graph, next, to, seen)))
    }
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(module, targets)| targets.iter().map(move |t| (module, t)))
        .filter(|(module, target)| reaches(&graph, target, module, &mut BTreeSet::new()))
        .map(|(module, target)| format!("{module} -> {target} -> … -> {module}"))
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn every_ranked_module_exists() {
    let src = src_dir();
    let missing: Vec<&str> = RANKS
        .iter()
        .flat_map(|rank| rank.iter().copied())
        .filter(|m| !src.join(format!("{m}.rs")).exists() && !src.join(m).join("mod.rs").exists())
        .collect();
    assert!(missing.is_empty(), "RANKS names modules with no file: {missing:?}");
}

#[test]
fn the_reader_sees_what_rust_sees() {
    assert_eq!(
        top_level_refs("use crate::{digest::Digest, index::{A, B}, Mocker};"),
        ["digest", "index", "Mocker"]
    );
    assert_eq!(
        top_level_refs("let x = crate::images::find(m, i)?; $crate::error"),
        ["images", "error"]
    );
    assert!(top_level_refs("use super::list::image_size; mycrate::x").is_empty());
    assert_eq!(
        code_only("a // crate::images\n\"crate::x\\\"\" '\"' '\\'' r#\"crate::y\"\n\"# b"),
        "a \n\"\" '' '' \"\"\n b"
    );
}
