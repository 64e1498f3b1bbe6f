//! ARCHITECTURE.md's claims about the code, checked on the code itself (no emulator needed):
//! where AWS is called, that every match over `Step` decides for every step, that no module
//! imports a module that imports it back, and that the "where to change what" table names
//! files that exist.
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every source file under `src/`, by its path from the root, without its tests.
fn sources() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root().join("src")];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap().to_string();
                let rel = path
                    .strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, code);
            }
        }
    }
    assert!(out.len() > 20, "found only {} sources", out.len());
    out
}

#[test]
fn every_aws_call_lives_in_resources_or_aws_rs_or_the_state_object() {
    let allowed = |f: &str| {
        f.starts_with("src/resources/") || f == "src/aws.rs" || f == "src/state/remote.rs"
    };
    let calling: Vec<String> = sources()
        .into_iter()
        .filter(|(_, code)| code.contains(".send()") || code.contains(".into_paginator()"))
        .map(|(f, _)| f)
        .collect();
    assert!(
        calling.iter().any(|f| f == "src/resources/vpc.rs"),
        "the check no longer sees the calls it looks for: {calling:?}"
    );
    let outside: Vec<&String> = calling.iter().filter(|f| !allowed(f)).collect();
    assert!(
        outside.is_empty(),
        "AWS calls outside src/resources/, src/aws.rs and src/state/remote.rs: {outside:?}"
    );
}

/// The variants of `Step`, read from `src/graph.rs`.
fn step_variants() -> Vec<String> {
    let graph = std::fs::read_to_string(root().join("src/graph.rs")).unwrap();
    let body = graph
        .split("pub(crate) enum Step {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    let names: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.is_empty())
        .map(|l| l.trim_end_matches(',').to_string())
        .collect();
    assert!(names.contains(&"LambdaEnis".to_string()), "{names:?}");
    names
}

fn mentions_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn no_match_over_step_leaves_a_step_out() {
    let variants = step_variants();
    let mut found = Vec::new();
    for (file, code) in sources() {
        for (n, line) in code.lines().enumerate() {
            let compared = [
                "== Step::",
                "!= Step::",
                "== ResourceKind::",
                "!= ResourceKind::",
            ];
            if compared.iter().any(|c| line.contains(c)) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
        // `matches!(x, A | B)` over steps decides for two and lets the rest fall through.
        for (i, _) in code.match_indices("matches!(") {
            let args: String = code[i..].chars().take_while(|c| *c != ')').collect();
            if variants.iter().any(|v| mentions_word(&args, v)) || args.contains("ResourceKind::") {
                let n = code[..i].lines().count();
                found.push(format!("{file}:{n}: {}", args.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "non-exhaustive matches over Step or ResourceKind (write a `match` that names every \
         step or kind):\n{}",
        found.join("\n")
    );
    // A wildcard arm is the other way to leave steps out; clippy refuses it.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("wildcard_enum_match_arm = \"warn\""));
}

/// The module a file is (`resources::vpc` for `src/resources/vpc.rs`).
fn module_of(file: &str) -> String {
    let m = file
        .trim_start_matches("src/")
        .trim_end_matches(".rs")
        .trim_end_matches("/mod");
    m.replace('/', "::")
}

/// The modules a file names through `crate::` and `super::` paths.
fn imports(module: &str, code: &str, all: &BTreeSet<String>) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let path = word(&code[i + 7..]);
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        if let Some(m) = (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| all.contains(m))
        {
            deps.insert(m);
        }
    }
    for (i, _) in code.match_indices("super::") {
        let rest = &code[i + 7..];
        let items: Vec<String> = if let Some(list) = rest.strip_prefix('{') {
            let list = list.split('}').next().unwrap_or("");
            list.split(',').map(|s| word(s.trim())).collect()
        } else {
            vec![word(rest)]
        };
        for item in items {
            let first = item.split("::").next().unwrap_or("");
            let m = if parent.is_empty() {
                first.to_string()
            } else {
                format!("{parent}::{first}")
            };
            if all.contains(&m) {
                deps.insert(m);
            }
        }
    }
    deps.remove(module);
    // A module and the module that declares it share what the parent holds: not a cycle.
    deps.retain(|d| !module.starts_with(&format!("{d}::")));
    deps
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let files = sources();
    let all: BTreeSet<String> = files.keys().map(|f| module_of(f)).collect();
    let graph: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(f, code)| {
            let m = module_of(f);
            let deps = imports(&m, code, &all);
            (m, deps)
        })
        .collect();
    assert!(
        graph["resources::vpc"].contains("resources::ec2"),
        "the check no longer sees imports: {:?}",
        graph["resources::vpc"]
    );
    // Depth-first search for a path back to the start.
    for start in graph.keys() {
        let mut stack: Vec<Vec<&String>> = vec![vec![start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path[path.len() - 1];
            for next in &graph[last] {
                assert!(
                    next != start,
                    "import cycle: {} -> {start}",
                    path.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" -> ")
                );
                if seen.insert(next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
}

#[test]
fn the_where_to_change_what_table_names_files_that_exist() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = doc
        .split("## Where to change what")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Where to change what\" section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut named = 0;
    for row in table.lines().filter(|l| l.starts_with('|')) {
        for (i, cell) in row.split('`').enumerate() {
            // Odd pieces are code spans; the paths among them are checked.
            let is_path = cell.ends_with(".rs") || cell.ends_with(".md") || cell.ends_with('/');
            if i % 2 == 1 && is_path && !cell.contains('<') {
                named += 1;
                assert!(
                    root().join(cell).exists(),
                    "ARCHITECTURE.md names {cell}, which does not exist"
                );
            }
        }
    }
    assert!(named >= 8, "the table names only {named} files");
}
