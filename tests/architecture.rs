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
