//! The layering rules that keep codecs and control deterministic: `protocol/` and `control/`
//! never do I/O, read the clock, log or touch tokio (quinn-proto's rule, made checkable).

use std::path::Path;

const FORBIDDEN: [&str; 7] =
    ["tokio", "Instant::now", "SystemTime::now", "std::fs", "std::net", "tracing", "std::thread::sleep"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code outside `#[cfg(test)]` modules (tests may use the clock).
fn production_part(source: &str) -> &str {
    source.find("#[cfg(test)]").map_or(source, |at| &source[..at])
}

#[test]
fn protocol_and_control_are_pure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("protocol"), &mut files);
    rust_files(&root.join("control"), &mut files);
    // Each BMS folder's codec and spec are pure too; its simulator (`sim.rs`) is not.
    let mut bms_files = Vec::new();
    rust_files(&root.join("bms"), &mut bms_files);
    files.extend(bms_files.into_iter().filter(|file| !file.ends_with("sim.rs")));
    assert!(!files.is_empty());
    let mut offences = Vec::new();
    for file in files {
        // The control state file is the one sanctioned piece of I/O in control/.
        if file.ends_with("control/persist.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for (number, line) in production_part(&source).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    offences.push(format!("{}:{}: uses {word}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "impure code in pure layers:\n{}", offences.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The module import graph: no circles, and the pure layers import nothing from the layers above.
//
// Nodes are modules, one per file (`src/victron/bus_item.rs` is `victron::bus_item`,
// `src/bank/mod.rs` is `bank`, `src/lib.rs` the root ""). An edge `a -> b` is a path in `a`'s
// production code (before its first `#[cfg(test)]`) that names `b`: `use crate::b::..`,
// `crate::b::f()`, `super::..`, `self::..`, or a child module declared in `a` (`use jbd::X`,
// `jbd::decode(..)`). A path is resolved to the longest module prefix it names. Edges from a
// module to its own ancestors are left out: a child is part of its parent (`use super::Scan` in
// `bms/jbd/codec.rs` is how the module tree works, not a layering circle). Unit-test files and the
// binary's `main.rs` are not part of the library's graph.

use std::collections::{BTreeMap, BTreeSet};

/// module -> the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Circles that are allowed: none. An entry would be the edge whose removal breaks a circle;
/// `circle_allowlist_is_current` fails as soon as an entry no longer closes one.
const ALLOWED_CIRCLE_EDGES: &[(&str, &str)] = &[];

/// What the pure layers (`protocol/`, `bms/`) must never import: I/O, tasks, the bus, the file.
const ABOVE_THE_CODECS: [&str; 7] = ["driver", "app", "task", "victron", "config", "bank", "monitor"];

/// The module path of `file` (relative to `src/`), or `None` for files outside the library's
/// module graph (unit-test files, the binary).
fn module_of(relative: &Path) -> Option<String> {
    let mut parts: Vec<String> =
        relative.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.last()?.clone();
    if last == "main" || last == "tests" || last.ends_with("_tests") {
        return None;
    }
    if last == "mod" || (last == "lib" && parts.len() == 1) {
        parts.pop();
    }
    Some(parts.join("::"))
}

/// `source` with comments, string and char literals blanked (so `"use crate::x"` in a message or
/// `// crate::y` in a comment is no edge).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(chars.get(i.wrapping_sub(1)))
        {
            // Raw string r"..", r#".."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len()
                && !(chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')))
            {
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3; // 'x'
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The identifier at `chars[at..]`, with its end.
fn ident_at(chars: &[char], at: usize) -> (String, usize) {
    let mut end = at;
    while ident_char(chars.get(end)) {
        end += 1;
    }
    (chars[at..end].iter().collect(), end)
}

/// The child modules `code` declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn child_modules(code: &str) -> BTreeSet<String> {
    code.split(';')
        .filter_map(|statement| {
            let words: Vec<&str> = statement.split_whitespace().collect();
            match words.as_slice() {
                [.., "mod", name] if name.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    Some((*name).to_owned())
                }
                _ => None,
            }
        })
        .collect()
}

/// The paths of one `use` tree (`a::{b, c::{self, d as e}}` -> `a::b`, `a::c`, `a::c::d`).
fn use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path.split_whitespace().collect::<String>()];
    };
    let prefix: String = tree[..open].split_whitespace().collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(use_tree)
        .map(|item| {
            if item == "self" {
                prefix.trim_end_matches("::").to_owned()
            } else {
                format!("{prefix}{item}")
            }
        })
        .collect()
}

/// Every path in `code` that starts at `crate`, `super`, `self` or one of `children`, as segments.
fn paths_in(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let starts_here = |first: &str| ["crate", "super", "self"].contains(&first) || children.contains(first);
    let mut out = Vec::new();
    // `use` statements (top level and inside functions).
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(ident_char(chars.get(i - 1)) || chars[i - 1] == ':');
        if !boundary || !ident_char(chars.get(i)) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(&chars, i);
        if word == "use" && chars.get(end).is_some_and(|c| c.is_whitespace()) {
            let statement: String = chars[end..].iter().take_while(|c| **c != ';').collect();
            for path in use_tree(&statement) {
                let segments: Vec<String> = path.split("::").map(str::to_owned).collect();
                if segments.first().is_some_and(|s| starts_here(s)) {
                    out.push(segments);
                }
            }
        } else if starts_here(&word) && chars.get(end) == Some(&':') && chars.get(end + 1) == Some(&':') {
            // An inline path: `crate::bms::jbd::codec::decode(..)`.
            let mut segments = vec![word];
            let mut at = end;
            while chars.get(at) == Some(&':')
                && chars.get(at + 1) == Some(&':')
                && ident_char(chars.get(at + 2))
            {
                let (segment, after) = ident_at(&chars, at + 2);
                segments.push(segment);
                at = after;
            }
            out.push(segments);
        }
        i = end;
    }
    out
}

/// The module `path` (as written in `module`) names: the longest module prefix of its absolute
/// form.
fn resolve(module: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut absolute: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            absolute.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().map(String::as_str) == Some("super") {
        absolute.pop()?;
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().map(String::as_str));
    (0..=absolute.len()).rev().map(|n| absolute[..n].join("::")).find(|m| modules.contains(m))
}

/// The import graph of `(module, source)` pairs.
fn import_graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = Graph::new();
    for (module, source) in files {
        let code = code_only(production_part(source));
        let children = child_modules(&code);
        let uses = graph.entry(module.clone()).or_default();
        for path in paths_in(&code, &children) {
            let Some(target) = resolve(module, &path, &modules) else { continue };
            let ancestor = target.is_empty() || module.starts_with(&format!("{target}::"));
            if target != *module && !ancestor {
                uses.insert(target);
            }
        }
    }
    graph
}

/// The library's modules and their sources.
fn library_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let module = module_of(file.strip_prefix(&root).unwrap())?;
            Some((module, std::fs::read_to_string(&file).unwrap()))
        })
        .collect()
}

/// The circles of `graph`: its strongly connected components of more than one module (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, node: &'a str) {
        let n = w.index.len();
        w.index.insert(node, n);
        w.low.insert(node, n);
        w.stack.push(node);
        for next in w.graph.get(node).into_iter().flatten() {
            if !w.index.contains_key(next.as_str()) {
                visit(w, next);
                let low = w.low[next.as_str()].min(w.low[node]);
                w.low.insert(node, low);
            } else if w.stack.contains(&next.as_str()) {
                let low = w.index[next.as_str()].min(w.low[node]);
                w.low.insert(node, low);
            }
        }
        if w.low[node] == w.index[node] {
            let at = w.stack.iter().rposition(|m| *m == node).unwrap();
            let mut component: Vec<String> = w.stack.drain(at..).map(str::to_owned).collect();
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut walk =
        Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found.sort();
    walk.found
}

/// `graph` without the allowed circle edges.
fn without_allowed(graph: &Graph, allowed: &[(&str, &str)]) -> Graph {
    let mut graph = graph.clone();
    for (from, to) in allowed {
        if let Some(uses) = graph.get_mut(*from) {
            uses.remove(*to);
        }
    }
    graph
}

/// Whether `to` is reachable from `from`.
fn reaches(graph: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(node) = todo.pop() {
        if node == to {
            return true;
        }
        if seen.insert(node.clone()) {
            todo.extend(graph.get(&node).into_iter().flatten().cloned());
        }
    }
    false
}

/// Edges from modules under one of `layers` to modules under one of `forbidden`.
fn layer_offences(graph: &Graph, layers: &[&str], forbidden: &[&str]) -> Vec<String> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    graph
        .iter()
        .filter(|(module, _)| layers.contains(&top(module).as_str()))
        .flat_map(|(module, uses)| {
            uses.iter()
                .filter(|t| forbidden.contains(&top(t).as_str()))
                .map(move |t| format!("{module} -> {t}"))
        })
        .collect()
}

fn describe(graph: &Graph, circle: &[String]) -> String {
    let edges: Vec<String> = circle
        .iter()
        .flat_map(|from| {
            graph[from].iter().filter(|to| circle.contains(to)).map(move |to| format!("{from} -> {to}"))
        })
        .collect();
    format!("{{{}}}: {}", circle.join(", "), edges.join(", "))
}

#[test]
fn no_module_import_circles() {
    let graph = import_graph(&library_sources());
    assert!(graph.len() > 50 && graph.contains_key("victron::bus_item"), "the source walk found too little");
    let found = circles(&without_allowed(&graph, ALLOWED_CIRCLE_EDGES));
    let text: Vec<String> = found.iter().map(|c| describe(&graph, c)).collect();
    assert!(found.is_empty(), "module import circles (a module reaches itself):\n{}", text.join("\n"));
}

#[test]
fn bms_folders_import_nothing_from_driver_task_victron_or_config() {
    let graph = import_graph(&library_sources());
    let folders: Vec<&String> = graph.keys().filter(|m| m.starts_with("bms::")).collect();
    assert!(folders.iter().any(|m| m.as_str() == "bms::jbd::plan"), "no BMS folder found: {folders:?}");
    let offences: Vec<String> = folders
        .iter()
        .flat_map(|module| {
            graph[module.as_str()]
                .iter()
                .filter(|t| {
                    ["driver", "task", "victron", "config"].contains(&t.split("::").next().unwrap_or(""))
                })
                .map(move |t| format!("{module} -> {t}"))
        })
        .collect();
    assert!(offences.is_empty(), "a BMS folder imports a layer above it:\n{}", offences.join("\n"));
}

#[test]
fn circle_allowlist_is_current() {
    let graph = import_graph(&library_sources());
    let rest = without_allowed(&graph, ALLOWED_CIRCLE_EDGES);
    for (from, to) in ALLOWED_CIRCLE_EDGES {
        let edge = graph.get(*from).is_some_and(|uses| uses.contains(*to));
        assert!(
            edge && reaches(&rest, to, from),
            "{from} -> {to} no longer closes a circle: remove it from ALLOWED_CIRCLE_EDGES"
        );
    }
}

#[test]
fn codecs_and_the_registry_import_nothing_from_the_layers_above() {
    let graph = import_graph(&library_sources());
    assert!(graph.contains_key("bms") && graph.contains_key("bms::jbd::codec"));
    let offences = layer_offences(&graph, &["protocol", "bms"], &ABOVE_THE_CODECS);
    assert!(offences.is_empty(), "protocol/ or bms/ imports a layer above it:\n{}", offences.join("\n"));
}

// The checks above must be able to fail: the same functions on made-up modules.

fn made_up(files: &[(&str, &str)]) -> Graph {
    import_graph(&files.iter().map(|(m, s)| (m.to_string(), s.to_string())).collect::<Vec<_>>())
}

#[test]
fn the_circle_finder_finds_made_up_circles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.entry(from.to_string()).or_default().insert(to.to_string());
            g.entry(to.to_string()).or_default();
        }
        g
    };
    let with = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d"), ("x", "a")]);
    assert_eq!(circles(&with), [vec!["a", "b", "c"], vec!["d", "e"]]);
    assert!(circles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty(), "a diamond is no circle");
    // Removing one allowed edge breaks one circle, not the other.
    assert_eq!(circles(&without_allowed(&with, &[("c", "a")])), [vec!["d", "e"]]);
    assert!(reaches(&with, "x", "e") && !reaches(&with, "e", "x"));
}

#[test]
fn the_parser_reads_edges_from_made_up_sources() {
    let graph = made_up(&[
        ("", "pub mod a;\npub mod b;"),
        ("a", "mod inner;\nuse crate::b::Thing;\nuse inner::Helper as H;\nfn f() { let _ = super::b::g(); }"),
        ("a::inner", "use super::Parent; // a child uses its parent: no edge\nuse crate::b;"),
        (
            "b",
            "use super::{a::{self, X}};\n/* crate::c::ghost */ fn g() -> &'static str { \"use crate::c::Y;\" }\n\
             #[cfg(test)]\nmod tests { use crate::c::Z; }",
        ),
        ("c", "pub fn h() { let q = '\"'; crate::b::g(); }"),
    ]);
    let uses = |m: &str| graph[m].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(uses("a"), ["a::inner", "b"]);
    assert_eq!(uses("a::inner"), ["b"]);
    assert_eq!(uses("b"), ["a"], "c only in a comment, a string and test code");
    assert_eq!(uses("c"), ["b"]);
    assert_eq!(circles(&graph), [vec!["a", "a::inner", "b"]]);
    let offences = layer_offences(
        &made_up(&[
            ("protocol", "pub mod jbd;"),
            ("protocol::jbd", "use crate::config::Protocol;"),
            ("config", ""),
        ]),
        &["protocol", "bms"],
        &ABOVE_THE_CODECS,
    );
    assert_eq!(offences, ["protocol::jbd -> config"]);
}

#[test]
fn use_trees_expand() {
    assert_eq!(
        use_tree("super::{field, jbd::{self, scan as s}, FrameError}"),
        ["super::field", "super::jbd", "super::jbd::scan", "super::FrameError"]
    );
    assert_eq!(module_of(Path::new("victron/bus_item.rs")).as_deref(), Some("victron::bus_item"));
    assert_eq!(module_of(Path::new("bank/mod.rs")).as_deref(), Some("bank"));
    assert_eq!(module_of(Path::new("lib.rs")).as_deref(), Some(""));
    assert_eq!(module_of(Path::new("bank/task_tests.rs")), None);
}
