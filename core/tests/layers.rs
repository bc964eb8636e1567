//! The crate's layers point one way: each top-level module of `src/` names (in a `use`
//! or a path, `crate::x`) only modules below it in [`LAYERS`]. The same table opens
//! docs/DESIGN.md; a change that needs an upward import moves code, not the table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. A module may import any module listed before it, and no other.
const LAYERS: &[&str] = &[
    "retry", "task", "report", "progress", "store", "error", "run_id", "fake", "value", "contain",
    "describe", "timeline", "plan", "exec", "run", "dist", "cli", "private",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names through `crate::`, comments left out; a
/// grouped `use crate::{a, b::c}` counts each group member.
fn named(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find("};").unwrap_or(group.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            out.insert(ident(group[start..].trim()));
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// The top-level module a file of `src` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let first = file
        .strip_prefix(src)
        .expect("under src")
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &all {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        seen.insert(module.clone());
        let Some(level) = LAYERS.iter().position(|&m| m == module) else {
            wrong.push(format!(
                "`{module}` is not in LAYERS: give it its place in the table (and in docs/DESIGN.md)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for name in named(&text) {
            let Some(target) = LAYERS.iter().position(|&m| m == name) else {
                continue;
            };
            if target >= level && name != module {
                wrong.push(format!(
                    "{} names `crate::{name}`, a layer at or above `{module}`",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    for layer in LAYERS {
        assert!(
            seen.contains(*layer),
            "LAYERS lists `{layer}`, which src/ does not have"
        );
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_grouped_and_nested_imports() {
    let names = named(
        "use crate::a::X;\nuse crate::{b, c::{D, E}, f::G};\n// crate::commented\nlet x = crate::h::y();",
    );
    let expected: BTreeSet<String> = ["a", "b", "c", "f", "h"].map(String::from).into();
    assert_eq!(names, expected);
}
