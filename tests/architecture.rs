//! The layout's rules, checked on the source itself:
//! - no file imports a file that imports it back, directly or through others (a cycle
//!   makes the data flow unreadable and every change ripple);
//! - no function outside tests is 120 lines or longer.
//!
//! Paths are read from `crate::`, `super::` and `self::` paths anywhere in the code (in
//! `use` lines and inline), after comments and string literals are blanked out. Test code
//! (`#[cfg(test)] mod …` and `tests.rs` files) is left out: a test may import anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source roots of the workspace's crates.
const CRATES: [&str; 5] = [
    "agent/src",
    "common/src",
    "detector/src",
    "detector/live/src",
    "src",
];

/// Functions must be shorter than this many lines.
const MAX_FUNCTION_LINES: usize = 120;

type ModulePath = Vec<String>;

struct SourceFile {
    path: PathBuf,
    module: ModulePath,
    /// The code with comments and literals blanked, test modules cut.
    code: String,
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

/// `a/b.rs` and `a/b/mod.rs` are module `a::b`; `lib.rs` and `main.rs` the crate root.
fn module_of(root: &Path, path: &Path) -> ModulePath {
    let relative = path.strip_prefix(root).unwrap().with_extension("");
    let mut parts: ModulePath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source with comments, string and character literals replaced by spaces (line
/// breaks kept, so line numbers hold).
fn blank_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, text: &[char]| {
        out.extend(text.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let end = if rest.starts_with(&['/', '/']) {
            i + rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j..].starts_with(&['/', '*']) {
                    depth += 1;
                    j += 2;
                } else if chars[j..].starts_with(&['*', '/']) {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if !ident_before && raw_string_start(rest).is_some() {
            let (prefix, hashes) = raw_string_start(rest).unwrap();
            let mut j = i + prefix;
            loop {
                if j >= chars.len() {
                    break j;
                }
                if chars[j] == '"' && chars[j + 1..].iter().take(hashes).all(|&c| c == '#') {
                    break j + 1 + hashes;
                }
                j += 1;
            }
        } else if rest[0] == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == '\'' && rest.get(1) == Some(&'\\') {
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            j + 1
        } else if rest[0] == '\'' && rest.get(2) == Some(&'\'') {
            i + 3
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        let end = end.min(chars.len());
        blank(&mut out, &chars[i..end]);
        i = end;
    }
    out
}

/// `r"`, `r#"`, `br##"`…: the length of the opening and the number of `#`.
fn raw_string_start(text: &[char]) -> Option<(usize, usize)> {
    let skip = usize::from(text.first() == Some(&'b'));
    if text.get(skip) != Some(&'r') {
        return None;
    }
    let hashes = text[skip + 1..].iter().take_while(|&&c| c == '#').count();
    (text.get(skip + 1 + hashes) == Some(&'"')).then_some((skip + 2 + hashes, hashes))
}

/// Index of the brace that closes the one at `open`.
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The code without its `#[cfg(test)]` modules.
fn without_tests(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at..];
        let Some(open) = after.find(['{', ';']) else {
            break;
        };
        let end = if after.as_bytes()[open] == b';' {
            at + open
        } else {
            at + matching_brace(after.as_bytes(), open)
        };
        let blanked: String = out[at..=end.min(out.len() - 1)]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..=end.min(out.len() - 1), &blanked);
    }
    out
}

fn read_crate(root: &str) -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|path| {
            let source = std::fs::read_to_string(&path).unwrap();
            SourceFile {
                module: module_of(&root, &path),
                code: without_tests(&blank_literals(&source)),
                path,
            }
        })
        .collect()
}

/// The modules a file declares (`mod name;` or `pub mod name;`), which its code may name
/// without `self::`.
fn child_modules(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix("pub ")
                .or(line.strip_prefix("pub(crate) "))
                .unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// Every path the code names from `crate`, `super` or `self`, or from a module the file
/// declares (`child::x`, as `self::child::x`), with `use` groups (`a::{b, c::d}`)
/// expanded: each as its anchor and segments.
fn crate_paths(code: &str) -> Vec<(String, Vec<String>)> {
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let children = child_modules(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // A path's first segment: not the tail of a longer name, nor after `::`.
        let at_start = (i == 0 || !is_ident(bytes[i - 1])) && !code[..i].ends_with("::");
        let anchor = ["crate", "super", "self"]
            .into_iter()
            .find(|a| code[i..].starts_with(&format!("{a}::")));
        let child = children
            .iter()
            .find(|c| code[i..].starts_with(&format!("{c}::")));
        match (anchor, child) {
            (Some(anchor), _) if at_start => {
                let mut tree = Vec::new();
                let end = parse_tree(code, i + anchor.len() + 2, Vec::new(), &mut tree);
                for segments in tree {
                    paths.push((anchor.to_owned(), segments));
                }
                i = end;
            }
            (None, Some(child)) if at_start => {
                let mut tree = Vec::new();
                let end = parse_tree(code, i + child.len() + 2, vec![child.clone()], &mut tree);
                for segments in tree {
                    paths.push(("self".to_owned(), segments));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    paths
}

/// Parses a use tree at `at` (after `anchor::`), adding each leaf path under `prefix`;
/// returns where it ended.
fn parse_tree(code: &str, mut at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let bytes = code.as_bytes();
    let mut segments = prefix;
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if bytes.get(at) == Some(&b'{') {
            at += 1;
            loop {
                at = parse_tree(code, at, segments.clone(), out);
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return at + 1;
                }
            }
        }
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if at > start {
            segments.push(code[start..at].to_owned());
        }
        if code[at..].starts_with("::") {
            at += 2;
            continue;
        }
        out.push(segments);
        return at;
    }
}

/// The file module a path names: the longest prefix of it that is a file.
fn resolve(
    files: &BTreeSet<ModulePath>,
    here: &ModulePath,
    anchor: &str,
    segments: &[String],
) -> Option<ModulePath> {
    let mut base = match anchor {
        "crate" => Vec::new(),
        "self" => here.clone(),
        _ => here[..here.len().saturating_sub(1)].to_vec(),
    };
    let mut segments = segments;
    while segments.first().is_some_and(|s| s == "super") {
        base.pop();
        segments = &segments[1..];
    }
    (0..=segments.len()).rev().find_map(|n| {
        let mut candidate = base.clone();
        candidate.extend_from_slice(&segments[..n]);
        files.contains(&candidate).then_some(candidate)
    })
}

/// The import graph of one crate, file module to file modules.
fn import_graph(files: &[SourceFile]) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let modules: BTreeSet<ModulePath> = files.iter().map(|f| f.module.clone()).collect();
    files
        .iter()
        .map(|file| {
            let targets = crate_paths(&file.code)
                .into_iter()
                .filter_map(|(anchor, segments)| {
                    resolve(&modules, &file.module, &anchor, &segments)
                })
                .filter(|target| *target != file.module)
                .collect();
            (file.module.clone(), targets)
        })
        .collect()
}

/// The strongly connected components of more than one file (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<Vec<ModulePath>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        index: BTreeMap<&'a ModulePath, usize>,
        low: BTreeMap<&'a ModulePath, usize>,
        stack: Vec<&'a ModulePath>,
        found: Vec<Vec<ModulePath>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a ModulePath) {
        let n = walk.index.len();
        walk.index.insert(node, n);
        walk.low.insert(node, n);
        walk.stack.push(node);
        for next in walk.graph.get(node).into_iter().flatten() {
            if !walk.index.contains_key(next) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&next) {
                let low = walk.low[node].min(walk.index[next]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut component = Vec::new();
            while let Some(member) = walk.stack.pop() {
                component.push(member.clone());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                walk.found.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

/// Every function of the code with its first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = code[i..].find("fn ") {
        let at = i + offset;
        i = at + 3;
        if at > 0 && is_ident(bytes[at - 1]) {
            continue;
        }
        let name: String = code[i..]
            .trim_start()
            .chars()
            .take_while(|&c| c.is_alphanumeric() || c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(` types
        }
        // The body opens at the first `{` outside brackets; a `;` there first is a
        // declaration without a body.
        let mut depth = 0i32;
        let mut open = None;
        for (j, &b) in bytes.iter().enumerate().skip(i) {
            match b {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    open = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let close = matching_brace(bytes, open);
        let first = code[..at].matches('\n').count() + 1;
        let last = code[..close.min(code.len())].matches('\n').count() + 1;
        found.push((name, first, last - first + 1));
    }
    found
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let mut report = Vec::new();
    for root in CRATES {
        let files = read_crate(root);
        for cycle in cycles(&import_graph(&files)) {
            let names: Vec<String> = cycle
                .iter()
                .map(|m| {
                    format!(
                        "{root}/{}",
                        if m.is_empty() {
                            "<root>".to_owned()
                        } else {
                            m.join("/")
                        }
                    )
                })
                .collect();
            report.push(names.join(" <-> "));
        }
    }
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for root in CRATES {
        for file in read_crate(root) {
            for (name, line, lines) in functions(&file.code) {
                if lines >= MAX_FUNCTION_LINES {
                    long.push(format!(
                        "{}:{line} fn {name}: {lines} lines",
                        file.path.display()
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions of {MAX_FUNCTION_LINES} lines or more:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checks_see_cycles_long_functions_and_test_code() {
    let code = blank_literals(
        "mod kid;\nuse crate::a::{b::{C, D}, e};\n// crate::x\nlet s = \"super::y\";\nfn f() -> [u8; 2] {\n    '{';\n    g(r#\"}\"#)\n}\npub use kid::K;\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n",
    );
    let code = without_tests(&code);
    let paths: Vec<String> = crate_paths(&code)
        .into_iter()
        .map(|(anchor, segments)| format!("{anchor}::{}", segments.join("::")))
        .collect();
    assert_eq!(
        paths,
        [
            "crate::a::b::C",
            "crate::a::b::D",
            "crate::a::e",
            "self::kid::K"
        ]
    );
    assert_eq!(functions(&code), [("f".to_owned(), 5, 4)]);
    let module = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<ModulePath>();
    let graph = BTreeMap::from([
        (module(&["a"]), BTreeSet::from([module(&["b"])])),
        (module(&["b"]), BTreeSet::from([module(&["c"])])),
        (module(&["c"]), BTreeSet::from([module(&["a"])])),
        (module(&["d"]), BTreeSet::from([module(&["a"])])),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    let files = BTreeSet::from([module(&[]), module(&["x"]), module(&["x", "y"])]);
    let here = module(&["x", "y"]);
    let seg = |s: &[&str]| s.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(
        resolve(&files, &here, "super", &seg(&["Thing"])),
        Some(module(&["x"]))
    );
    assert_eq!(
        resolve(&files, &here, "crate", &seg(&["x", "y", "f"])),
        Some(here.clone())
    );
    assert_eq!(
        resolve(&files, &here, "super", &seg(&["super", "T"])),
        Some(module(&[]))
    );
}

#[test]
fn the_detector_core_builds_without_io_crates() {
    // Normal and build dependencies with default features: what `cargo build -p
    // omen-detector` compiles.
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "omen-detector",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .args(["--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("linfa"), "{tree}");
    for io in [
        "tokio",
        "axum",
        "hyper",
        "reqwest",
        "rdkafka",
        "rdkafka-sys",
        "plotters",
    ] {
        assert!(
            !crates.contains(io),
            "omen-detector depends on {io}:\n{tree}"
        );
    }
}
