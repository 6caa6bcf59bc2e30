//! Runs every Flagsmith engine-test-data vector (`../shared/vectors/flagsmith/test_cases`,
//! `.json` and `.jsonc`) through the engine and compares the result exactly.

use std::fs;
use std::path::{Path, PathBuf};

use evaluation_proxy::flagsmith::engine::{
    get_evaluation_result, CompiledContext, EnvironmentDocument, EvaluationContext,
    IdentityContext, Trait,
};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/flagsmith/test_cases")
}

/// Removes `//` line comments and `/* */` block comments outside JSON strings.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = '\0';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    if n == '\n' {
                        out.push('\n');
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

fn load(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "jsonc") {
        strip_comments(&text)
    } else {
        text
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn comment_stripping_respects_strings() {
    let src = "{\"a\": \"http://x/*y*/\", // c\n \"b\": /* d */ 1, \"c\": \"\\\"//\"}";
    let v: Value = serde_json::from_str(&strip_comments(src)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"a": "http://x/*y*/", "b": 1, "c": "\"//"})
    );
}

#[test]
fn all_vectors_pass() {
    let files = case_files(&vectors_dir());
    assert_eq!(files.len(), 199, "expected 199 vector files");
    check_cases(&files);
}

/// Differential run against cases generated with the Python reference engine; only runs
/// when `FLAGSMITH_DIFF_DIR` points at a directory of `{"context", "result"}` files.
#[test]
fn differential_cases_from_env() {
    let Some(dir) = std::env::var_os("FLAGSMITH_DIFF_DIR") else {
        return;
    };
    let files = case_files(Path::new(&dir));
    assert!(!files.is_empty(), "no cases in {dir:?}");
    check_cases(&files);
}

/// Differential run of the environment-document mapper: files `{"document", "identity":
/// null | {"identifier", "traits": [Trait…]}, "result"}` produced with the Python SDK
/// mapper + reference engine; only runs when `FLAGSMITH_DOC_DIFF_DIR` is set.
#[test]
fn document_differential_from_env() {
    let Some(dir) = std::env::var_os("FLAGSMITH_DOC_DIFF_DIR") else {
        return;
    };
    let files = case_files(Path::new(&dir));
    assert!(!files.is_empty(), "no cases in {dir:?}");
    let mut failures = Vec::new();
    for path in &files {
        let case = load(path);
        let doc: EnvironmentDocument = serde_json::from_value(case["document"].clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let compiled = CompiledContext::new(&doc.to_context(None));
        let identity = (!case["identity"].is_null()).then(|| {
            let traits: Vec<Trait> =
                serde_json::from_value(case["identity"]["traits"].clone()).unwrap();
            IdentityContext::from_traits(case["identity"]["identifier"].as_str().unwrap(), &traits)
        });
        let got = serde_json::to_value(compiled.evaluate(identity.as_ref())).unwrap();
        if got != case["result"] {
            failures.push(format!(
                "{}:\n  want {}\n  got  {got}",
                path.display(),
                case["result"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn case_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonc"))
        .collect();
    files.sort();
    files
}

fn check_cases(files: &[PathBuf]) {
    let mut failures = Vec::new();
    for path in files {
        let case = load(path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ctx: EvaluationContext = match serde_json::from_value(case["context"].clone()) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: context does not parse: {e}"));
                continue;
            }
        };
        let got = serde_json::to_value(get_evaluation_result(&ctx)).unwrap();
        let want = &case["result"];
        // Map equality ignores key order for `flags`; `segments` is an ordered list.
        if &got != want {
            failures.push(format!("{name}:\n  want {want}\n  got  {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
