//! Topological sort of flags by `dependencies` (spec §11): iterative DFS post-order, so long
//! dependency chains cannot overflow the stack.

use std::collections::HashSet;
use std::fmt;

use indexmap::IndexMap;

use super::model::Flag;

/// A dependency cycle; `path` is the DFS path (insertion order) when the cycle was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    /// Flag keys on the DFS path, which may include ancestors outside the cycle.
    pub path: Vec<String>,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Detected a cycle between flags [{}]",
            self.path.join(", ")
        )
    }
}

impl std::error::Error for CycleError {}

/// Sorts indices of items described by `key_of`/`deps_of`; `flag_keys` empty means all items.
pub fn sort_indices<'a>(
    n: usize,
    key_of: impl Fn(usize) -> &'a str,
    deps_of: impl Fn(usize) -> &'a [String],
    flag_keys: &[String],
) -> Result<Vec<usize>, CycleError> {
    let mut available: IndexMap<&'a str, usize> = IndexMap::with_capacity(n);
    for i in 0..n {
        available.insert(key_of(i), i);
    }
    let starts: Vec<&str> = if flag_keys.is_empty() {
        available.keys().copied().collect()
    } else {
        flag_keys.iter().map(String::as_str).collect()
    };
    let mut out = Vec::with_capacity(n);
    let mut path: Vec<&str> = Vec::new();
    let mut on_path: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(usize, &str, usize)> = Vec::new();
    for start in starts {
        let Some(&idx) = available.get(start) else {
            continue;
        };
        if deps_of(idx).is_empty() {
            available.swap_remove(start);
            out.push(idx);
            continue;
        }
        let start_key = key_of(idx);
        path.push(start_key);
        on_path.insert(start_key);
        stack.push((idx, start_key, 0));
        while let Some(frame) = stack.last_mut() {
            let deps = deps_of(frame.0);
            if frame.2 < deps.len() {
                let d = deps[frame.2].as_str();
                frame.2 += 1;
                if on_path.contains(d) {
                    return Err(CycleError {
                        path: path.iter().map(|s| s.to_string()).collect(),
                    });
                }
                let Some(&di) = available.get(d) else {
                    continue;
                };
                if deps_of(di).is_empty() {
                    available.swap_remove(d);
                    out.push(di);
                } else {
                    let dk = key_of(di);
                    path.push(dk);
                    on_path.insert(dk);
                    stack.push((di, dk, 0));
                }
            } else {
                let (idx, key, _) = *frame;
                out.push(idx);
                path.pop();
                on_path.remove(key);
                available.swap_remove(key);
                stack.pop();
            }
        }
    }
    Ok(out)
}

/// Standalone topological sort exactly as spec §11 (used by the vector tests and callers that
/// want an order without compiling).
pub fn topological_sort<'a>(
    flags: &'a [Flag],
    flag_keys: &[String],
) -> Result<Vec<&'a Flag>, CycleError> {
    let order = sort_indices(
        flags.len(),
        |i| flags[i].key.as_str(),
        |i| flags[i].dependencies.as_slice(),
        flag_keys,
    )?;
    Ok(order.into_iter().map(|i| &flags[i]).collect())
}
