//! A fixed amount of engine work on the bench fixtures, for instruction counts under callgrind
//! (stable on a loaded machine, unlike Criterion's wall-clock figures):
//!
//! ```text
//! cargo build --profile release --example engine_profile
//! valgrind --tool=callgrind --toggle-collect='*CompiledFlags::evaluate*' \
//!     target/release/examples/engine_profile eval 2000
//! ```
//!
//! The Ir total divided by the iteration count is the cost of one evaluation. Modes: `eval`
//! (`evaluate(&context, &[])`), `keys` (with all 50 keys), `parse` (context parse only).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;

use evaluation_proxy::amplitude::engine::{parse_flags, CompiledFlags, Value};

fn fixture(name: &str) -> Result<Vec<u8>, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/fixtures")
        .join(name);
    std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "eval".to_string());
    let n: usize = match args.next() {
        Some(s) => s.parse().map_err(|e| format!("iterations {s:?}: {e}"))?,
        None => 1000,
    };
    let flags_json = fixture("realistic-50-flags.json")?;
    let context_json = fixture("realistic-user-context.json")?;
    let flags = parse_flags(&flags_json).map_err(|e| e.to_string())?;
    let keys: Vec<String> = flags.iter().map(|f| f.key().to_string()).collect();
    let compiled = CompiledFlags::compile(flags);
    let context = Value::from_json_slice(&context_json).map_err(|e| e.to_string())?;
    match mode.as_str() {
        "eval" => {
            for _ in 0..n {
                let r = compiled
                    .evaluate(black_box(&context), &[])
                    .map_err(|e| e.to_string())?;
                black_box(r);
            }
        }
        "keys" => {
            for _ in 0..n {
                let r = compiled
                    .evaluate(black_box(&context), black_box(&keys))
                    .map_err(|e| e.to_string())?;
                black_box(r);
            }
        }
        "parse" => {
            for _ in 0..n {
                let v =
                    Value::from_json_slice(black_box(&context_json)).map_err(|e| e.to_string())?;
                black_box(v);
            }
        }
        other => return Err(format!("unknown mode {other:?} (eval, keys, parse)")),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine_profile: {e}");
            ExitCode::FAILURE
        }
    }
}
