//! Cohort-scale benchmark, membership lookup part: how much `Cohorts::enrich` (the lookup an
//! evaluation of a cohort-targeting flag does first) adds per request with Redis.
//!
//! Run by bench/cohort-scale/run.py against the redis-server it started, after the proxy has
//! stored cohort `big` (members `user-<i>`) there. Usage:
//! `lookup_latency <redis-uri> <cohort size> <samples>`; prints one JSON line with the
//! percentiles (µs) of enrich with a flag targeting `big`:
//! - `enrich_with_lookup_us`: every sample a user not looked up before, on a store whose
//!   replica-local cohort mirror has loaded (answered without Redis);
//! - `enrich_with_lookup_no_mirror_us`: the same on a store with the mirror switched off (each
//!   lookup misses the replica's membership cache and reaches Redis: the path before the mirror);
//! - `enrich_with_lookup_repeat_users_us`: users drawn again from a working set of 1,000 already
//!   looked up, with the mirror;
//! - and, as the baseline, of enrich with a flag set without cohort targeting (which returns
//!   before any lookup).
//!
//! Also the mirror's load time from `connect`, the process RSS it added (VmRSS before `connect`
//! and once loaded) and the heap bytes of its member buffers.

use std::sync::Arc;
use std::time::Instant;

use evaluation_proxy::amplitude::cohort::Cohorts;
use evaluation_proxy::amplitude::engine::{parse_flags, CompiledFlags, Map, Value};
use evaluation_proxy::store::{RedisSettings, RedisStore, Store};

const COHORT_FLAG: &str = r#"[{"key":"f","variants":{"on":{"key":"on"}},"segments":[{"conditions":[[{"selector":["context","user","cohort_ids"],"op":"set contains any","values":["big"]}]],"variant":"on"}]}]"#;
const PLAIN_FLAG: &str = r#"[{"key":"f","variants":{"on":{"key":"on"}},"segments":[{"conditions":[[{"selector":["context","user","user_id"],"op":"is","values":["x"]}]],"variant":"on"}]}]"#;

fn flags(json: &str) -> anyhow::Result<CompiledFlags> {
    Ok(CompiledFlags::compile(parse_flags(json.as_bytes())?))
}

/// Times `samples` sequential enrich calls for users alternating member / non-member: user
/// `first + i` of a spread over the cohort, or when `working_set` is given, user `i % working_set`.
async fn measure(
    cohorts: &Cohorts,
    flags: &CompiledFlags,
    size: u64,
    samples: usize,
    first: usize,
    working_set: Option<usize>,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut micros = Vec::with_capacity(samples);
    let mut members_found = 0;
    for i in 0..samples {
        let i = match working_set {
            Some(set) => i % set.max(1),
            None => first + i,
        };
        // A spread of members (even i) and non-members (odd i, ids beyond the cohort).
        let n = (i as u64).wrapping_mul(2_654_435_761) % size.max(1);
        let id = if i % 2 == 0 { n } else { size + 1_000_000 + n };
        let mut user = Map::default();
        user.insert("user_id".to_owned(), Value::String(format!("user-{id}")));
        let start = Instant::now();
        cohorts.enrich(flags, &mut user).await?;
        micros.push(start.elapsed().as_secs_f64() * 1e6);
        if let Some(Value::Array(ids)) = user.get("cohort_ids") {
            members_found += usize::from(!ids.is_empty());
        }
    }
    micros.sort_by(|a, b| a.total_cmp(b));
    Ok((micros, members_found))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

fn summary(sorted: &[f64]) -> String {
    format!(
        r#"{{"p50":{:.1},"p90":{:.1},"p99":{:.1},"max":{:.1}}}"#,
        percentile(sorted, 0.5),
        percentile(sorted, 0.9),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0)
    )
}

/// The process's resident set (MiB), from /proc (0 where unavailable).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kib = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                kib.trim().parse::<f64>().ok()
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(uri), Some(size), Some(samples)) = (args.get(1), args.get(2), args.get(3)) else {
        anyhow::bail!("usage: lookup_latency <redis-uri> <cohort size> <samples>");
    };
    let size: u64 = size.parse()?;
    let samples: usize = samples.parse()?;
    let targeting = flags(COHORT_FLAG)?;
    let plain = flags(PLAIN_FLAG)?;

    // A replica with the mirror: how long it takes to load and what it costs in memory.
    let rss_before = rss_mib();
    let started = Instant::now();
    let mirrored = Arc::new(RedisStore::connect(&RedisSettings::new(uri)).await?);
    while !mirrored.mirror_ready() {
        if started.elapsed().as_secs() > 600 {
            anyhow::bail!("the cohort mirror did not load within 10 minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let rss_growth = rss_mib() - rss_before;
    let (mirrored_members, mirror_bytes) = mirrored.mirror_size();

    // The path before the mirror: cache + SMEMBERS.
    let without_mirror = RedisSettings {
        cohort_mirror: false,
        ..RedisSettings::new(uri)
    };
    let redis_only: Arc<dyn Store> = Arc::new(RedisStore::connect(&without_mirror).await?);
    let redis_cohorts = Cohorts::new(redis_only, Vec::new());
    let mirrored: Arc<dyn Store> = mirrored;
    let cohorts = Cohorts::new(mirrored, Vec::new());
    // Warm the connection pools and the code paths before timing (users 0..1000, the
    // working set of the repeat-user run).
    measure(&redis_cohorts, &targeting, size, 1000, 0, None).await?;
    measure(&cohorts, &targeting, size, 1000, 0, None).await?;
    measure(&cohorts, &plain, size, 1000, 0, None).await?;
    // Users 1000.. were never looked up: without the mirror every lookup reaches Redis.
    let (no_mirror, found_no_mirror) =
        measure(&redis_cohorts, &targeting, size, samples, 1000, None).await?;
    let (with_lookup, found) = measure(&cohorts, &targeting, size, samples, 1000, None).await?;
    anyhow::ensure!(
        found == found_no_mirror,
        "the mirror found {found} members, Redis {found_no_mirror}"
    );
    let (repeat, _) = measure(&cohorts, &targeting, size, samples, 0, Some(1000)).await?;
    let (without, _) = measure(&cohorts, &plain, size, samples, 0, None).await?;
    println!(
        r#"{{"samples":{samples},"members_found":{found},"mirror_load_seconds":{load_seconds:.2},"mirror_members":{mirrored_members},"mirror_heap_mib":{:.1},"mirror_rss_growth_mib":{rss_growth:.1},"enrich_with_lookup_us":{},"enrich_with_lookup_no_mirror_us":{},"enrich_with_lookup_repeat_users_us":{},"enrich_without_cohort_flags_us":{}}}"#,
        mirror_bytes as f64 / 1048576.0,
        summary(&with_lookup),
        summary(&no_mirror),
        summary(&repeat),
        summary(&without)
    );
    Ok(())
}
