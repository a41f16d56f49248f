//! The shape of the code, checked from the source itself: within each crate, no
//! circle of imports between files (a file's `crate::` and `super::` paths name the
//! files it depends on), no source file outside tests over 800 lines, and a crate
//! root whose `//!` map names every module it declares.
//!
//! A file's module declarations and the crate root's re-exports are not imports;
//! test code (`tests.rs` files, and a file's `#[cfg(test)] mod tests` block) is left
//! out, as it may look at any part of what it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file outside tests may be.
const MAX_LINES: usize = 800;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`a/b.rs` and `a/b/mod.rs`: `a::b`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without its comments, string literals and test block.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path a use-tree starting at `rest` names (`a::{b::C, d}` -> `a::b::C`, `a::d`).
fn use_tree(prefix: &[String], rest: &str, out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut s = rest.trim_start();
    loop {
        if let Some(inner) = s.strip_prefix('{') {
            // Split the group at its top-level commas.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        use_tree(&path, &inner[start..i], out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        use_tree(&path, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        if end == 0 {
            break;
        }
        match &s[..end] {
            "super" => {
                path.pop();
            }
            "self" => {}
            seg => path.push(seg.to_string()),
        }
        s = &s[end..];
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => break,
        }
    }
    out.push(path);
}

/// The modules of a crate (`modules`) that the code of `module` names.
fn imports(
    module: &[String],
    code: &str,
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut paths = Vec::new();
    for (kw, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut at = 0;
        while let Some(i) = code[at..].find(kw) {
            let start = at + i;
            at = start + kw.len();
            let before = code[..start].chars().next_back();
            // Not the tail of a longer path (`super::super::`), nor a macro's `$crate`.
            if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '$')) {
                continue;
            }
            use_tree(&base, &code[at..], &mut paths);
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        // The longest prefix of the path that is a module of the crate (a file).
        if let Some(m) = (1..=p.len())
            .rev()
            .map(|n| p[..n].to_vec())
            .find(|m| modules.contains(m))
        {
            if m != module {
                out.insert(m);
            }
        }
    }
    out
}

/// The circles of a graph (its strongly connected components of more than one node).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    // Reachability by depth-first search from every node: small graphs.
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<_, _> = graph.keys().map(|n| (n.clone(), reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        if done.contains(n) || !reachable[n].contains(n) {
            continue;
        }
        let circle: Vec<Vec<String>> = graph
            .keys()
            .filter(|m| reachable[n].contains(*m) && reachable[*m].contains(n))
            .cloned()
            .collect();
        done.extend(circle.iter().cloned());
        out.push(circle);
    }
    out
}

fn crates() -> Vec<(String, PathBuf)> {
    let ws = workspace();
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(ws.join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().join("src"),
            )
        })
        .collect();
    out.push(("shoal-bench".into(), ws.join("bench/src")));
    out.push(("shoal-tests".into(), ws.join("tests/src")));
    out.push(("shoal-history".into(), ws.join("tests/history/src")));
    out.sort();
    out
}

fn is_test_file(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "tests.rs")
}

#[test]
fn no_crate_has_a_circle_of_imports_between_its_files() {
    let mut found = Vec::new();
    for (name, src) in crates() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let files: Vec<PathBuf> = files.into_iter().filter(|f| !is_test_file(f)).collect();
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut graph = BTreeMap::new();
        for f in &files {
            let module = module_of(&src, f);
            if module.is_empty() {
                continue; // The crate root declares and re-exports; it imports nothing.
            }
            let code = code_of(&std::fs::read_to_string(f).expect("read"));
            let mut deps = imports(&module, &code, &modules);
            deps.remove(&Vec::new());
            graph.insert(module, deps);
        }
        assert!(
            graph.len() >= files.len().saturating_sub(1),
            "{name}: files missed"
        );
        for c in circles(&graph) {
            let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            found.push(format!("{name}: {}", names.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_outside_tests_is_over_800_lines() {
    let mut long = Vec::new();
    for (_, src) in crates() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files.into_iter().filter(|f| !is_test_file(f)) {
            let n = std::fs::read_to_string(&f).expect("read").lines().count();
            if n > MAX_LINES {
                long.push(format!("{}: {n} lines", f.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn every_crate_map_names_all_its_modules() {
    let mut missing = Vec::new();
    for (name, src) in crates() {
        for root in ["lib.rs", "main.rs"] {
            let Ok(text) = std::fs::read_to_string(src.join(root)) else {
                continue;
            };
            let map: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            for line in text.lines() {
                let decl = line.trim().trim_start_matches("pub ");
                let Some(module) = decl.strip_prefix("mod ").and_then(|m| m.strip_suffix(';'))
                else {
                    continue;
                };
                if !map.contains(&format!("`{module}`")) && !map.contains(&format!("{module}.rs")) {
                    missing.push(format!("{name}/{root}: {module}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules the crate's map does not name:\n{}",
        missing.join("\n")
    );
}

/// The checker itself finds a circle, through grouped and `super::` imports alike.
#[test]
fn the_checker_sees_circles_through_every_kind_of_path() {
    let modules: BTreeSet<Vec<String>> = [vec!["a"], vec!["b"], vec!["b", "c"], vec!["d"]]
        .into_iter()
        .map(|m| m.into_iter().map(String::from).collect())
        .collect();
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let a = imports(
        &m("a"),
        "use crate::{b::c::X, d};\nfn f() { crate::b::y(); }",
        &modules,
    );
    assert_eq!(a, BTreeSet::from([m("b::c"), m("d"), m("b")]));
    let c = imports(
        &m("b::c"),
        &code_of("use super::super::a::Z; let s = \"crate::d\";"),
        &modules,
    );
    assert_eq!(c, BTreeSet::from([m("a")]));
    let graph = BTreeMap::from([
        (m("a"), a),
        (m("b::c"), c),
        (m("b"), BTreeSet::new()),
        (m("d"), BTreeSet::new()),
    ]);
    assert_eq!(circles(&graph), vec![vec![m("a"), m("b::c")]]);
    // Comments and tests do not count.
    let code =
        code_of("// use crate::a;\nfn x() {}\n#[cfg(test)]\nmod tests {\n use crate::a;\n}\n");
    assert!(imports(&m("d"), &code, &modules).is_empty());
}
