//! Several proxies sharing one real `redis-server` and one fake Amplitude: one replica per
//! project talks to the vendor (the lease holder), the others follow through Redis, and every
//! outage (Redis while serving, Redis at start-up, the vendor at start-up) keeps requests
//! succeeding.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use bytes::Bytes;
use evaluation_proxy::amplitude::lease::project_id;
use evaluation_proxy::app::{self, StartError};
use evaluation_proxy::config::Config;
use evaluation_proxy::store::{new_token, RedisSettings, RedisStore, Store};
use serde_json::{json, Value};
use support::fake_amplitude::FakeAmplitude;
use support::redis_server::RedisServer;
use support::{eventually, example_flags, TestApp};

const MANAGEMENT_KEY: &str = "management-key-replicas";
const DEPLOYMENT: &str = "client-deployment-shared1";
const FLAGS: &str = "/sdk/v2/flags";
const DEPLOYMENTS: &str = "/api/1/deployments";
/// Flag and deployment poll interval of every replica in these tests.
const POLL: Duration = Duration::from_millis(200);
/// The sync lease TTL of every replica in these tests.
const TTL: Duration = Duration::from_millis(600);

fn config(fake: &FakeAmplitude, redis_url: &str) -> String {
    format!(
        "projects:\n  - apiKey: api-key-1\n    secretKey: secret-key-1\n    managementKey: {MANAGEMENT_KEY}\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  serverUrl: {url}\n  managementServerUrl: {url}\n\
         \x20 deploymentSyncIntervalMillis: {poll}\n  flagSyncIntervalMillis: {poll}\n  flagSyncJitterPercent: 0\n\
         \x20 redis:\n    uri: {redis_url}\n    leaseTtlMillis: {ttl}\n    connectionTimeoutMillis: 300\n    commandTimeoutMillis: 300\n\
         \x20 metrics:\n    port: 0\n",
        url = fake.url,
        poll = POLL.as_millis(),
        ttl = TTL.as_millis(),
    )
}

/// The example flags without their last flag: a different flag config to switch to.
fn changed_flags() -> String {
    let mut flags: Vec<Value> = serde_json::from_str(&example_flags()).unwrap();
    flags.pop();
    serde_json::to_string(&flags).unwrap()
}

async fn fake_upstream() -> FakeAmplitude {
    let fake = FakeAmplitude::start(MANAGEMENT_KEY).await;
    fake.set_deployments(&[(DEPLOYMENT, false)]);
    fake.set_flags(DEPLOYMENT, &example_flags());
    fake
}

async fn replica(fake: &FakeAmplitude, redis: &RedisServer) -> TestApp {
    let app = TestApp::spawn(&config(fake, &redis.url()), &[]).await;
    app.wait_ready().await;
    app
}

/// A store of our own on the test's Redis, to look at (or plant) what the replicas share.
async fn inspector(redis: &RedisServer) -> RedisStore {
    let settings = RedisSettings {
        connection_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        pool_size: 2,
        ..RedisSettings::new(redis.url())
    };
    RedisStore::connect(&settings).await.unwrap()
}

async fn served_flags(app: &TestApp) -> Option<String> {
    let response = app.get(FLAGS, DEPLOYMENT).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response.text().await.ok()
}

/// Waits until every app serves `expected` on `/sdk/v2/flags`.
async fn all_serve(apps: &[&TestApp], expected: &str, within: Duration) {
    for app in apps {
        eventually(within, || async {
            served_flags(app).await.as_deref() == Some(expected)
        })
        .await;
    }
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn user() -> String {
    json!({"user_id": "u1", "device_id": "d1", "country": "Canada", "user_properties": {"plan": "pro"}})
        .to_string()
}

#[tokio::test]
async fn three_replicas_poll_the_vendor_like_one_and_all_see_changes() {
    let redis = RedisServer::start();
    let fake = fake_upstream().await;
    let a = replica(&fake, &redis).await;
    let b = replica(&fake, &redis).await;
    let c = replica(&fake, &redis).await;
    all_serve(&[&a, &b, &c], &example_flags(), Duration::from_secs(5)).await;

    let (flags_before, lists_before) =
        (fake.requests(FLAGS).len(), fake.requests(DEPLOYMENTS).len());
    let window = Duration::from_secs(2);
    tokio::time::sleep(window).await;
    let flag_polls = fake.requests(FLAGS).len() - flags_before;
    let list_polls = fake.requests(DEPLOYMENTS).len() - lists_before;
    // One poller makes window / POLL = 10 calls of each kind; three would make about 30.
    let one_poller = (window.as_millis() / POLL.as_millis()) as usize;
    println!("in {window:?}: {flag_polls} flag and {list_polls} deployment requests (one poller: ~{one_poller})");
    assert!(flag_polls >= one_poller / 2, "someone polls: {flag_polls}");
    assert!(
        flag_polls <= one_poller * 3 / 2,
        "only the holder polls the flags: {flag_polls}"
    );
    assert!(
        list_polls <= one_poller * 3 / 2,
        "only the holder lists: {list_polls}"
    );

    // A change upstream reaches every replica: the holder's next poll, then the change signal.
    fake.set_flags(DEPLOYMENT, &changed_flags());
    let started = Instant::now();
    all_serve(&[&a, &b, &c], &changed_flags(), Duration::from_secs(5)).await;
    println!(
        "change visible on all replicas after {:?}",
        started.elapsed()
    );
    for app in [a, b, c] {
        app.stop().await;
    }
}

#[tokio::test]
async fn a_dead_holder_is_replaced_within_two_lease_ttls() {
    let redis = RedisServer::start();
    let fake = fake_upstream().await;
    // A holder that took the lease and died: it never renews or releases it.
    let store = inspector(&redis).await;
    let lease = format!("sync:{}", project_id(Some(MANAGEMENT_KEY), &[]));
    let dead_for = Duration::from_millis(1500);
    assert!(store
        .try_acquire(&lease, &new_token(), dead_for)
        .await
        .unwrap());
    let expires = Instant::now() + dead_for;

    let a = TestApp::spawn(&config(&fake, &redis.url()), &[]).await;
    let b = TestApp::spawn(&config(&fake, &redis.url()), &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if Instant::now() < expires {
        assert!(
            fake.requests(FLAGS).is_empty(),
            "followers leave the vendor to the holder"
        );
    }
    // After the dead holder's lease expires, one of them takes over within two TTLs.
    eventually(dead_for + 2 * TTL + Duration::from_secs(1), || async {
        !fake.requests(FLAGS).is_empty()
    })
    .await;
    println!(
        "takeover {:?} after the dead holder's lease expired",
        Instant::now().saturating_duration_since(expires)
    );
    all_serve(&[&a, &b], &example_flags(), Duration::from_secs(5)).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_holder_that_shuts_down_hands_over() {
    let redis = RedisServer::start();
    let fake = fake_upstream().await;
    // The first replica takes the lease; the second follows.
    let holder = replica(&fake, &redis).await;
    let follower = replica(&fake, &redis).await;
    holder.stop().await;
    let stopped = Instant::now();
    let before = fake.requests(FLAGS).len();
    fake.set_flags(DEPLOYMENT, &changed_flags());
    eventually(2 * TTL + Duration::from_secs(1), || async {
        fake.requests(FLAGS).len() > before
    })
    .await;
    println!(
        "the follower polled the vendor {:?} after the holder stopped",
        stopped.elapsed()
    );
    all_serve(&[&follower], &changed_flags(), Duration::from_secs(5)).await;
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_while_serving_fails_no_request_and_the_holder_reseeds() {
    let mut redis = RedisServer::start();
    let fake = fake_upstream().await;
    let apps = Arc::new(vec![
        replica(&fake, &redis).await,
        replica(&fake, &redis).await,
    ]);
    all_serve(
        &[&apps[0], &apps[1]],
        &example_flags(),
        Duration::from_secs(5),
    )
    .await;

    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for i in 0..4 {
        let (apps, sent, failed, stop) = (
            Arc::clone(&apps),
            Arc::clone(&sent),
            Arc::clone(&failed),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let app = &apps[i % apps.len()];
                let response = app
                    .post("/sdk/v2/vardata", DEPLOYMENT)
                    .body(user())
                    .send()
                    .await;
                let outcome = match response {
                    Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                        Ok(v) if v.get("welcome-banner").is_some() => Ok(()),
                        other => Err(format!("unexpected body {other:?}")),
                    },
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if let Err(error) = outcome {
                    println!("failed request: {error}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.stop();
    // Without Redis each replica fetches from the vendor itself: a change still arrives.
    fake.set_flags(DEPLOYMENT, &changed_flags());
    all_serve(
        &[&apps[0], &apps[1]],
        &changed_flags(),
        Duration::from_secs(5),
    )
    .await;
    let (status, body) = readiness(&apps[0]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["store"]
            .as_str()
            .is_some_and(|s| s.contains("unavailable")),
        "readiness tells Redis is down: {body}"
    );
    redis.restart();
    // Redis came back empty: the lease holder writes its last-known flags again.
    let store = inspector(&redis).await;
    eventually(Duration::from_secs(10), || async {
        store
            .get_flags(DEPLOYMENT)
            .await
            .ok()
            .flatten()
            .is_some_and(|f| f.json == changed_flags().as_bytes())
    })
    .await;
    let id = project_id(Some(MANAGEMENT_KEY), &[]);
    eventually(Duration::from_secs(5), || async {
        store.get_project_deployments(&id).await.ok().flatten() == Some(vec![DEPLOYMENT.to_owned()])
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        readiness(&apps[0]).await.1.get("store").is_none()
    })
    .await;
    stop.cancel();
    for task in load {
        task.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{sent} vardata requests during the outage test, {failed} failed");
    assert!(sent > 100, "the load ran: {sent}");
    assert_eq!(failed, 0, "no request failed while Redis was down");
    let apps = Arc::into_inner(apps).unwrap();
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_serves_from_the_vendor_then_shares() {
    let mut redis = RedisServer::start();
    redis.stop();
    let fake = fake_upstream().await;
    let app = replica(&fake, &redis).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["store"]
            .as_str()
            .is_some_and(|s| s.contains("redis unavailable")),
        "readiness tells Redis is down: {body}"
    );
    let response = app
        .post("/sdk/v2/vardata", DEPLOYMENT)
        .body(user())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Redis comes: the proxy connects in the background and seeds it.
    redis.restart();
    eventually(Duration::from_secs(10), || async {
        readiness(&app).await.1.get("store").is_none()
    })
    .await;
    let store = inspector(&redis).await;
    eventually(Duration::from_secs(5), || async {
        store
            .get_flags(DEPLOYMENT)
            .await
            .ok()
            .flatten()
            .is_some_and(|f| f.json == example_flags().as_bytes())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn vendor_down_with_a_warm_redis_serves_last_known_good_at_once() {
    let redis = RedisServer::start();
    let fake = fake_upstream().await;
    let warm = replica(&fake, &redis).await;
    warm.stop().await;

    fake.fail_next(FLAGS, &[500; 500]);
    fake.fail_next(DEPLOYMENTS, &[500; 500]);
    let started = Instant::now();
    let app = TestApp::spawn(&config(&fake, &redis.url()), &[]).await;
    app.wait_ready().await;
    let ready_after = started.elapsed();
    println!("ready after {ready_after:?} with the vendor down");
    // The vendor's retries alone take longer than this; the flags came from Redis.
    assert!(ready_after < Duration::from_secs(3), "{ready_after:?}");
    assert_eq!(
        served_flags(&app).await.as_deref(),
        Some(example_flags().as_str())
    );
    app.stop().await;
}

#[tokio::test]
async fn data_of_unconfigured_projects_is_left_alone_and_not_served() {
    let redis = RedisServer::start();
    let store = inspector(&redis).await;
    let other_flags = Bytes::from(example_flags());
    let version = store
        .put_flags("client-other-fleet", other_flags.clone())
        .await
        .unwrap();
    let others = vec!["client-other-fleet".to_owned()];
    store
        .put_project_deployments("another-fleets-project", &others)
        .await
        .unwrap();

    let fake = fake_upstream().await;
    let app = replica(&fake, &redis).await;
    // Several sync rounds, and a removal of one of our own deployments.
    fake.set_deployments(&[]);
    eventually(Duration::from_secs(5), || async {
        store.get_flags(DEPLOYMENT).await.unwrap().is_none()
    })
    .await;
    tokio::time::sleep(4 * POLL).await;

    let stored = store
        .get_flags("client-other-fleet")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.version, stored.json), (version, other_flags));
    assert_eq!(
        store
            .get_project_deployments("another-fleets-project")
            .await
            .unwrap(),
        Some(others)
    );
    let response = app.get(FLAGS, "client-other-fleet").send().await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "another fleet's deployment is not served"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_keyspace_from_a_newer_proxy_stops_start_up() {
    let redis = RedisServer::start();
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("SET")
        .arg("amplitude:schema_version")
        .arg(99)
        .query_async(&mut conn)
        .await
        .unwrap();
    let fake = fake_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&fake, &redis.url())).unwrap();
    let loaded = Config::load_from(Some(&path), &HashMap::new()).unwrap();
    match app::start(loaded.config).await {
        Err(StartError::Store(message)) => {
            assert!(message.contains("99"), "{message}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started against a newer keyspace"),
    }
}

#[tokio::test]
async fn listed_deployments_share_one_lease_too() {
    let redis = RedisServer::start();
    let fake = fake_upstream().await;
    let listed = format!(
        "projects:\n  - apiKey: api-key-1\n    secretKey: secret-key-1\n    deployments:\n      - key: {DEPLOYMENT}\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  serverUrl: {url}\n  managementServerUrl: {url}\n\
         \x20 flagSyncIntervalMillis: {poll}\n  flagSyncJitterPercent: 0\n\
         \x20 redis:\n    uri: {redis_url}\n    leaseTtlMillis: {ttl}\n\
         \x20 metrics:\n    port: 0\n",
        url = fake.url,
        redis_url = redis.url(),
        poll = POLL.as_millis(),
        ttl = TTL.as_millis(),
    );
    let a = TestApp::spawn(&listed, &[]).await;
    a.wait_ready().await;
    let b = TestApp::spawn(&listed, &[]).await;
    b.wait_ready().await;
    let before = fake.requests(FLAGS).len();
    let window = Duration::from_secs(1);
    tokio::time::sleep(window).await;
    let polls = fake.requests(FLAGS).len() - before;
    let one_poller = (window.as_millis() / POLL.as_millis()) as usize;
    assert!(polls <= one_poller * 3 / 2, "one poller: {polls}");
    assert!(fake.requests(DEPLOYMENTS).is_empty());
    fake.set_flags(DEPLOYMENT, &changed_flags());
    all_serve(&[&a, &b], &changed_flags(), Duration::from_secs(5)).await;
    a.stop().await;
    b.stop().await;
}
