//! The import rule of weft's crates, checked over their sources: each
//! crate's top-level modules are given in layers, bottom first, and a
//! module may use (`crate::x`) only modules of layers below its own.
//! Modules of one layer may not use each other; a module not placed in any
//! layer is an error, so a new module has to be put somewhere on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which top-level modules each module uses: `from -> {to}`.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads every `.rs` file under `src` (except `main.rs`, a client of the
/// library) and collects the `crate::NAME` references of each top-level module.
pub fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut g = Graph::new();
    visit(src, src, &mut g)?;
    Ok(g)
}

fn visit(root: &Path, dir: &Path, g: &mut Graph) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            visit(root, &path, g)?;
            continue;
        }
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" || rel.starts_with("bin") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let uses = g.entry(module.clone()).or_default();
        for name in references(&text) {
            if name != module {
                uses.insert(name);
            }
        }
    }
    Ok(())
}

/// The top-level module names a source text refers to as `crate::NAME` or
/// in `use crate::{a, b::c}` groups. Comments are skipped.
pub fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `weft_crate::` and the like
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != "self" {
                        out.insert(name);
                    }
                }
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                out.insert(name);
            }
        }
    }
    out
}

/// Every way `g` breaks the layering (empty when it holds).
pub fn violations(g: &Graph, layers: &[&[&str]]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = layers.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |m| (*m, i))).collect();
    let mut out = Vec::new();
    for (from, uses) in g {
        let Some(&rf) = rank.get(from.as_str()) else {
            out.push(format!("module `{from}` is in no layer: place it in the layer list"));
            continue;
        };
        for to in uses {
            match rank.get(to.as_str()) {
                Some(&rt) if rt < rf => {}
                Some(&rt) if rt == rf => out.push(format!("`{from}` uses `{to}`, a module of its own layer")),
                Some(_) => out.push(format!("`{from}` uses `{to}`, a module of a higher layer")),
                None => out.push(format!("`{from}` uses `{to}`, which is in no layer")),
            }
        }
    }
    out
}

/// A cycle among the modules of `g`, if there is one (as `a -> b -> a`).
pub fn cycle(g: &Graph) -> Option<String> {
    fn walk<'a>(g: &'a Graph, m: &'a str, path: &mut Vec<&'a str>, done: &mut BTreeSet<&'a str>) -> Option<String> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut c: Vec<&str> = path[i..].to_vec();
            c.push(m);
            return Some(c.join(" -> "));
        }
        if done.contains(m) {
            return None;
        }
        path.push(m);
        for to in g.get(m).into_iter().flatten() {
            if let Some(c) = walk(g, to, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m);
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| walk(g, m, &mut Vec::new(), &mut done))
}

/// Fails with every violation of `layers` (and any import circle) in the
/// crate at `manifest_dir` (its `CARGO_MANIFEST_DIR`).
pub fn assert_layers(manifest_dir: &str, layers: &[&[&str]]) {
    let src = Path::new(manifest_dir).join("src");
    let g = graph(&src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    assert!(g.len() >= layers.len(), "the source tree was not read: {g:?}");
    assert_eq!(cycle(&g), None, "an import circle");
    let broken = violations(&g, layers);
    assert!(broken.is_empty(), "import rule broken:\n{}", broken.join("\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_from_paths_and_groups_but_not_comments() {
        let text = "use crate::body::Body;\nuse crate::{config::Snapshot, random};\n// crate::app is only mentioned\nlet x = crate::telemetry::Metrics::new();\nuse weft_crate::x;";
        let r: Vec<String> = references(text).into_iter().collect();
        assert_eq!(r, ["body", "config", "random", "telemetry"]);
    }

    #[test]
    fn a_use_upwards_or_sideways_is_a_violation_and_cycles_are_found() {
        let mut g = Graph::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default();
        g.entry("c".into()).or_default().insert("a".into());
        assert!(violations(&g, &[&["b"], &["a"], &["c"]]).is_empty());
        assert_eq!(violations(&g, &[&["a"], &["b"], &["c"]]), ["`a` uses `b`, a module of a higher layer"]);
        assert_eq!(violations(&g, &[&["a", "b"], &["c"]]), ["`a` uses `b`, a module of its own layer"]);
        assert!(cycle(&g).is_none());
        g.entry("b".into()).or_default().insert("c".into());
        assert_eq!(cycle(&g).as_deref(), Some("a -> b -> c -> a"));
    }
}
