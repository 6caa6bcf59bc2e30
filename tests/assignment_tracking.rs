//! Assignment tracking end to end: the proxy (or the tracker alone, where time must be
//! controlled) against a fake Amplitude upload API, and replicas sharing a real redis-server.
//!
//! Counts are checked after `shutdown`, which flushes every queued and retrying event, so no
//! assertion depends on timing.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evaluation_proxy::amplitude::assignment::{
    ApiKeys, Dedup, ManualClock, Tracker, TrackerSettings, UploadSettings,
};
use evaluation_proxy::amplitude::engine::{parse_flags, CompiledFlags, Value as EngineValue};
use serde_json::{json, Value};
use support::fake_analytics::FakeAnalytics;
use support::redis_server::RedisServer;
use support::{example_flags, TestApp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const KEY: &str = "client-tracking-deployment";
const API_KEY: &str = "project-api-key-1";
const DAY: i64 = 86_400_000;

/// A proxy serving the example flags from a file, uploading to `fake`.
fn config(fake: &FakeAnalytics, threshold: usize, period_ms: u64, extra: &str) -> String {
    config_for(KEY, fake, threshold, period_ms, extra)
}

/// [`config`] with another deployment key.
fn config_for(
    key: &str,
    fake: &FakeAnalytics,
    threshold: usize,
    period_ms: u64,
    extra: &str,
) -> String {
    format!(
        "projects:\n  - apiKey: {API_KEY}\n    deployments:\n      - key: {key}\n        flagsFile: flags.json\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  analyticsServerUrl: {url}\n\
         \x20 assignment:\n    eventUploadThreshold: {threshold}\n    eventUploadPeriodMillis: {period_ms}\n\
         \x20 metrics:\n    port: 0\n{extra}",
        url = fake.url
    )
}

async fn spawn(config: &str) -> TestApp {
    let app = TestApp::spawn(config, &[("flags.json", &example_flags())]).await;
    app.wait_ready().await;
    app
}

fn user(i: usize) -> Value {
    json!({"user_id": format!("user-{i}"), "device_id": format!("device-{i}"), "country": "Canada"})
}

/// POSTs a user to `/sdk/v2/vardata` and returns the results (asserting 200).
async fn evaluate(app: &TestApp, user: &Value) -> Value {
    let response = app
        .post("/sdk/v2/vardata", KEY)
        .body(user.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Java's `String.hashCode()`, written independently of the proxy's.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The event the spec (§7.5, §7.6) derives from a user and the results the proxy returned.
fn assert_event_matches(event: &Value, user: &Value, results: &Value) {
    let (uid, did) = (
        user["user_id"].as_str().unwrap(),
        user["device_id"].as_str().unwrap(),
    );
    let results = results.as_object().unwrap();
    let mut flags: Vec<&String> = results.keys().collect();
    flags.sort();
    let mut canonical = format!("{uid} {did} ");
    for flag in flags {
        canonical.push_str(&format!(
            "{flag} {} ",
            results[flag]["key"].as_str().unwrap()
        ));
    }
    let time = event["time"].as_i64().unwrap();
    assert_eq!(event["event_type"], "[Experiment] Assignment");
    assert_eq!(event["user_id"], uid);
    assert_eq!(event["device_id"], did);
    assert_eq!(
        event["insert_id"],
        format!("{uid} {did} {} {}", java_hash(&canonical), time / DAY)
    );
    let mut properties = serde_json::Map::new();
    let (mut set, mut unset) = (serde_json::Map::new(), serde_json::Map::new());
    for (flag, variant) in results {
        let meta = &variant["metadata"];
        properties.insert(format!("{flag}.variant"), variant["key"].clone());
        properties.insert(
            format!("{flag}.details"),
            json!(format!(
                "v{} rule:{}",
                meta["flagVersion"],
                meta["segmentName"].as_str().unwrap()
            )),
        );
        if meta["default"] == json!(true) {
            unset.insert(format!("[Experiment] {flag}"), json!("-"));
        } else {
            set.insert(format!("[Experiment] {flag}"), variant["key"].clone());
        }
    }
    assert_eq!(event["event_properties"], Value::Object(properties));
    assert_eq!(
        event["user_properties"],
        json!({"$set": set, "$unset": unset})
    );
    assert_eq!(event["groups"], json!({}));
}

fn insert_ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["insert_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_event_per_distinct_assignment() {
    let fake = FakeAnalytics::start().await;
    let app = spawn(&config(&fake, 100, 50, "")).await;
    let u1 = user(1);
    let results = evaluate(&app, &u1).await;
    evaluate(&app, &u1).await;
    // The v1 endpoint tracks the unfiltered results: the same assignment.
    let v1 = app
        .post("/v1/vardata", KEY)
        .body(u1.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), 200);
    // Not tracked: no-track, an empty user, a user without ids.
    let no_track = app
        .post("/sdk/v2/vardata", KEY)
        .header("X-Amp-Exp-Track", "no-track")
        .body(user(9).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(no_track.status(), 200);
    evaluate(&app, &json!({})).await;
    evaluate(&app, &json!({"country": "Canada"})).await;
    // A different user, and a different set of variants for the same user, are new.
    evaluate(&app, &user(2)).await;
    let only_banner = app
        .post("/sdk/v2/vardata?flag_keys=welcome-banner", KEY)
        .body(u1.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(only_banner.status(), 200);
    let banner_results: Value = only_banner.json().await.unwrap();
    let metrics_url = format!("http://{}/metrics", app.metrics_addr);
    let client = app.client.clone();
    support::eventually(Duration::from_secs(10), || {
        let (client, url) = (client.clone(), metrics_url.clone());
        async move {
            let page = client.get(&url).send().await.unwrap().text().await.unwrap();
            [
                "amplitude_proxy_assignment_total",
                "amplitude_proxy_assignment_filter_total",
                "amplitude_proxy_assignment_send_total",
                "amplitude_proxy_assignment_send_failure_total",
                "amplitude_proxy_assignment_no_identity_total",
                "amplitude_proxy_assignment_queue_depth",
            ]
            .iter()
            .all(|name| page.contains(name))
        }
    })
    .await;
    app.stop().await;

    let events = fake.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(insert_ids(&events).len(), 3);
    assert!(fake.api_keys().iter().all(|k| k == API_KEY));
    let of = |uid: &str, flags: usize| {
        events
            .iter()
            .find(|e| {
                e["user_id"] == uid && e["event_properties"].as_object().unwrap().len() == flags * 2
            })
            .unwrap_or_else(|| panic!("no event for {uid} with {flags} flags: {events:#?}"))
    };
    assert_event_matches(
        of("user-1", results.as_object().unwrap().len()),
        &u1,
        &results,
    );
    assert_event_matches(of("user-1", 1), &u1, &banner_results);
    for request in fake.requests() {
        assert_eq!(request["api_key"], API_KEY);
    }
}

#[tokio::test]
async fn server_errors_and_throttling_before_success_lose_nothing() {
    let fake = FakeAnalytics::start().await;
    fake.fail_next(&[500, 429, 503, 429]);
    let app = spawn(&config(&fake, 5, 20, "")).await;
    for i in 0..20 {
        evaluate(&app, &user(i)).await;
    }
    app.stop().await;
    let events = fake.events();
    assert_eq!(events.len(), 20);
    assert_eq!(insert_ids(&events).len(), 20);
    // Four failed attempts, then the same batch again (delivered), then the rest. While the
    // worker waits out the backoff the queue fills, so the rest may go in fewer, larger
    // batches than the threshold (it triggers an upload; it does not cap one).
    let requests = fake.requests();
    assert!(requests.len() >= 5, "failed attempts were retried");
    let insert_ids_of = |request: &Value| -> Vec<Value> {
        let events = request["events"].as_array().unwrap();
        events.iter().map(|e| e["insert_id"].clone()).collect()
    };
    assert!(
        requests[..5]
            .windows(2)
            .all(|pair| insert_ids_of(&pair[0]) == insert_ids_of(&pair[1])),
        "the failed batch was retried unchanged: {requests:#?}"
    );
}

#[tokio::test]
async fn a_bad_event_does_not_drop_its_batch_and_413_splits() {
    let fake = FakeAnalytics::start().await;
    fake.check_id_lengths();
    fake.set_max_events(3);
    let app = spawn(&config(&fake, 12, 60_000, "")).await;
    for i in 0..10 {
        evaluate(&app, &user(i)).await;
    }
    // Amplitude rejects ids shorter than 5 characters.
    evaluate(&app, &json!({"user_id": "ab", "device_id": "device-x"})).await;
    evaluate(&app, &json!({"user_id": "user-y", "device_id": "d"})).await;
    app.stop().await;
    let events = fake.events();
    assert_eq!(events.len(), 10, "{events:#?}");
    assert!(events
        .iter()
        .all(|e| e["user_id"].as_str().unwrap().starts_with("user-")
            && e["device_id"].as_str().unwrap().starts_with("device-")));
    let largest = fake
        .requests()
        .iter()
        .map(|r| r["events"].as_array().unwrap().len())
        .max();
    assert_eq!(largest, Some(12), "the whole batch was tried first");
}

#[tokio::test]
async fn shutdown_under_load_loses_nothing() {
    let fake = FakeAnalytics::start().await;
    fake.set_delay(Duration::from_millis(5));
    fake.fail_next(&[503]);
    // Nothing is due before shutdown: every event is flushed by it.
    let mut app = spawn(&config(&fake, 1000, 600_000, "")).await;
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, url) = (app.client.clone(), app.url("/sdk/v2/vardata"));
        let (next, ok) = (Arc::clone(&next), Arc::clone(&ok));
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let sent = client
                    .post(&url)
                    .header("Authorization", format!("Api-Key {KEY}"))
                    .body(user(i).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return,
                }
            }
        }));
    }
    while ok.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let running = app.running.take().unwrap();
    running.shutdown();
    running.stopped().await;
    for client in clients {
        client.await.unwrap();
    }
    let answered = ok.load(Ordering::SeqCst);
    let events = fake.events();
    assert!(answered >= 300);
    assert_eq!(
        events.len(),
        answered,
        "every answered evaluation is one event"
    );
    assert_eq!(insert_ids(&events).len(), answered);
}

fn redis_extra(redis: &RedisServer) -> String {
    format!(
        "  redis:\n    uri: {}\n    connectionTimeoutMillis: 500\n    commandTimeoutMillis: 500\n",
        redis.url()
    )
}

#[tokio::test]
async fn three_replicas_sharing_redis_send_each_assignment_once() {
    let redis = RedisServer::start();
    let fake = FakeAnalytics::start().await;
    // One deployment key per replica: the dedup key is the project's API key and the
    // assignment, not the deployment. (Replicas sharing one flags-file deployment in Redis do
    // not all become ready: the store does not signal an unchanged write; see the report.)
    let keys = [
        "client-replica-a-deploy",
        "client-replica-b-deploy",
        "client-replica-c-deploy",
    ];
    let mut replicas = Vec::new();
    for key in keys {
        replicas.push(spawn(&config_for(key, &fake, 10, 50, &redis_extra(&redis))).await);
    }
    let users: Vec<Value> = (0..40).map(user).collect();
    for round in 0..2 {
        let mut calls = Vec::new();
        for (i, u) in users.iter().enumerate() {
            for (replica, key) in replicas.iter().zip(keys) {
                let request = replica
                    .post("/sdk/v2/vardata", key)
                    .body(u.to_string())
                    .send();
                calls.push(async move { (i, round, request.await.unwrap().status()) });
            }
        }
        for (_, _, status) in futures::future::join_all(calls).await {
            assert_eq!(status, 200);
        }
    }
    for replica in replicas {
        replica.stop().await;
    }
    let events = fake.events();
    assert_eq!(events.len(), users.len(), "{} events", events.len());
    assert_eq!(insert_ids(&events).len(), users.len());
}

#[tokio::test]
async fn redis_down_falls_back_to_the_local_filter() {
    let mut redis = RedisServer::start();
    let fake = FakeAnalytics::start().await;
    let app = spawn(&config(&fake, 10, 50, &redis_extra(&redis))).await;
    evaluate(&app, &user(1)).await;
    redis.stop();
    for i in 1..6 {
        evaluate(&app, &user(i)).await;
        evaluate(&app, &user(i)).await;
    }
    app.stop().await;
    let events = fake.events();
    assert_eq!(events.len(), 5, "{events:#?}");
    assert_eq!(insert_ids(&events).len(), 5);
}

/// The tracker with a hand-moved clock: the 24-hour window is exact.
#[tokio::test]
async fn the_same_assignment_is_sent_again_after_24_hours() {
    let fake = FakeAnalytics::start().await;
    let t0 = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(t0));
    let tasks = TaskTracker::new();
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let settings = TrackerSettings {
        upload: UploadSettings {
            url: fake.url.clone(),
            threshold: 1,
            period: Duration::from_millis(10),
            timeout: Duration::from_secs(10),
        },
        filter_capacity: 100,
        queue_capacity: 100,
    };
    let tracker = Tracker::start(
        settings,
        Arc::new(ApiKeys::new(vec![Some("k".into())])),
        Dedup::Local,
        clock.clone(),
        &tasks,
        stop.clone(),
        abort,
    )
    .unwrap();
    let flags = CompiledFlags::compile(parse_flags(example_flags().as_bytes()).unwrap());
    let track = |uid: &str| {
        let context = EngineValue::from_json_slice(
            format!(r#"{{"user":{{"user_id":"{uid}","device_id":"device-1"}}}}"#).as_bytes(),
        )
        .unwrap();
        let results = flags.evaluate(&context, &[]).unwrap();
        tracker.track(KEY, context, results);
    };
    track("user-1");
    clock.advance(DAY - 1);
    track("user-1"); // 1 ms short of 24 h: deduped
    track("user-2");
    clock.advance(1);
    track("user-1"); // 24 h after the first: sent again
    track("user-2"); // 1 ms after its first: deduped
    stop.cancel();
    tasks.close();
    tasks.wait().await;

    let events = fake.events();
    let sent: Vec<(String, i64)> = events
        .iter()
        .map(|e| {
            (
                e["user_id"].as_str().unwrap().to_owned(),
                e["time"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("user-1".to_owned(), t0),
            ("user-2".to_owned(), t0 + DAY - 1),
            ("user-1".to_owned(), t0 + DAY),
        ]
    );
    let day = |e: &Value| {
        e["insert_id"]
            .as_str()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(day(&events[0]), (t0 / DAY).to_string());
    assert_eq!(day(&events[2]), ((t0 + DAY) / DAY).to_string());
}
