//! Several proxy replicas sharing one real `redis-server` for their Flagsmith environment
//! documents: one replica polls the Flagsmith API (it holds the environment's lease), the
//! others load the document from Redis; a change reaches all of them; when the holder stops,
//! another takes over; a warm Redis makes a replica serve without the API; a Redis outage
//! never stops serving.
//!
//! Each replica gets its own fake Flagsmith API (all serving the same document), so the
//! tests can tell exactly which replica polled.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::fake_flagsmith::FakeFlagsmith;
use support::{eventually, TestApp};

use support::redis_server::RedisServer;

const SERVER_KEY: &str = "ser.replicated_server_key";
const CLIENT_KEY: &str = "replicated_client_key";

/// Generous bound for things that normally take milliseconds (timings never gate the tests;
/// the lease TTL with a 1 s poll timeout is 5 s).
const PATIENCE: Duration = Duration::from_secs(20);

/// A small document whose single flag has `value`.
fn document(updated_at: &str, value: &Value) -> String {
    json!({
        "api_key": CLIENT_KEY,
        "name": "Production",
        "updated_at": updated_at,
        "project": {"name": "p", "hide_disabled_flags": false, "server_key_only_feature_ids": [],
                    "segments": []},
        "feature_states": [
            {"feature": {"id": 1, "name": "banner", "type": "STANDARD"}, "enabled": true,
             "feature_state_value": value, "django_id": 1, "multivariate_feature_state_values": []}
        ],
        "identity_overrides": []
    })
    .to_string()
}

fn config(api_url: &str, redis_url: &str) -> String {
    format!(
        "configuration:\n  port: 0\n  host: 127.0.0.1\n  metrics:\n    port: 0\n  redis:\n    \
         uri: {redis_url}\n    prefix: fsreplicas\n    connectionTimeoutMillis: 1000\n    \
         commandTimeoutMillis: 1000\n  flagsmith:\n    apiUrl: {api_url}\n    \
         apiPollFrequencySeconds: 1\n    apiPollTimeoutSeconds: 1\n    environments: \
         [{{serverSideKey: {SERVER_KEY}, clientSideKey: {CLIENT_KEY}}}]\n"
    )
}

/// One replica and its own fake API.
struct Replica {
    fake: FakeFlagsmith,
    app: TestApp,
}

impl Replica {
    /// Starts a fake serving `doc` (None: failing with 503) and a proxy using it and `redis`.
    async fn start(redis: &RedisServer, doc: Option<&str>) -> Self {
        let fake = FakeFlagsmith::start().await;
        match doc {
            Some(doc) => fake.set_document(SERVER_KEY, doc),
            None => fake.set_failure(SERVER_KEY, Some(StatusCode::SERVICE_UNAVAILABLE)),
        }
        let app = TestApp::spawn(&config(&fake.api_url, &redis.url()), &[]).await;
        Self { fake, app }
    }

    /// The `banner` flag value this replica serves, if it serves the environment.
    async fn served(&self) -> Option<Value> {
        let response = self
            .app
            .client
            .get(self.app.url("/api/v1/flags/"))
            .header("X-Environment-Key", CLIENT_KEY)
            .send()
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        Some(body[0]["feature_state_value"].clone())
    }

    async fn status(&self, path: &str) -> u16 {
        self.app
            .client
            .get(self.app.url(path))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    fn polls(&self) -> usize {
        self.fake.requests().len()
    }
}

/// Waits until every replica serves `value`.
async fn all_serve(replicas: &[&Replica], value: &Value) {
    for replica in replicas {
        eventually(PATIENCE, || async move {
            replica.served().await.as_ref() == Some(value)
        })
        .await;
    }
}

/// Indexes of the replicas whose fake API received requests.
fn pollers(replicas: &[&Replica]) -> Vec<usize> {
    (0..replicas.len())
        .filter(|i| replicas[*i].polls() > 0)
        .collect()
}

#[tokio::test]
async fn one_replica_polls_and_a_change_reaches_all() {
    let redis = RedisServer::start();
    let v1 = document("2024-05-01T10:00:00Z", &json!("first"));
    let a = Replica::start(&redis, Some(&v1)).await;
    let b = Replica::start(&redis, Some(&v1)).await;
    let c = Replica::start(&redis, Some(&v1)).await;
    let replicas = [&a, &b, &c];
    all_serve(&replicas, &json!("first")).await;

    // Let the holder poll a few more times (304s), then check nobody else did.
    eventually(PATIENCE, || async {
        replicas.iter().map(|r| r.polls()).sum::<usize>() >= 4
    })
    .await;
    let polling = pollers(&replicas);
    assert_eq!(polling.len(), 1, "exactly one replica polls: {polling:?}");
    for replica in replicas {
        assert_eq!(replica.status("/readyz").await, 200);
        // Followers take their freshness from the holder's confirmations.
        assert_eq!(replica.status("/proxy/health").await, 200);
    }

    // A new document upstream reaches every replica through Redis.
    let v2 = document("2024-05-02T10:00:00Z", &json!("second"));
    for replica in replicas {
        replica.fake.set_document(SERVER_KEY, &v2);
    }
    all_serve(&replicas, &json!("second")).await;
    assert_eq!(pollers(&replicas), polling, "still only the holder polls");

    // The document is stored under a hash of the server key, never the key itself.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.contains("{flagsmith}:environment:")),
        "{keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(SERVER_KEY) || k.contains(CLIENT_KEY)),
        "{keys:?}"
    );

    for replica in [a, b, c] {
        replica.app.stop().await;
    }
}

#[tokio::test]
async fn another_replica_takes_over_when_the_holder_stops() {
    let redis = RedisServer::start();
    let v1 = document("2024-05-01T10:00:00Z", &json!("first"));
    let a = Replica::start(&redis, Some(&v1)).await;
    let b = Replica::start(&redis, Some(&v1)).await;
    all_serve(&[&a, &b], &json!("first")).await;
    eventually(PATIENCE, || async { a.polls() + b.polls() >= 2 }).await;
    let polling = pollers(&[&a, &b]);
    assert_eq!(polling.len(), 1, "{polling:?}");

    let (holder, survivor) = if polling[0] == 0 { (a, b) } else { (b, a) };
    holder.app.stop().await;
    let before = survivor.polls();
    let stopped = Instant::now();
    eventually(PATIENCE, || async { survivor.polls() > before }).await;
    eprintln!("takeover after {:?}", stopped.elapsed());

    // The new holder keeps the environment current.
    let v2 = document("2024-05-02T10:00:00Z", &json!("second"));
    survivor.fake.set_document(SERVER_KEY, &v2);
    all_serve(&[&survivor], &json!("second")).await;
    survivor.app.stop().await;
}

#[tokio::test]
async fn warm_redis_serves_a_new_replica_while_the_api_is_down() {
    let redis = RedisServer::start();
    let v1 = document("2024-05-01T10:00:00Z", &json!("stored"));
    let first = Replica::start(&redis, Some(&v1)).await;
    all_serve(&[&first], &json!("stored")).await;
    first.app.stop().await;

    // A replica whose API is down: it serves the stored document at once.
    let started = Instant::now();
    let second = Replica::start(&redis, None).await;
    eventually(PATIENCE, || async { second.status("/readyz").await == 200 }).await;
    eprintln!("ready from the warm store after {:?}", started.elapsed());
    assert_eq!(second.served().await, Some(json!("stored")));
    // It holds the lease now and keeps trying the API, while serving.
    eventually(PATIENCE, || async { second.polls() >= 2 }).await;
    assert!(second
        .fake
        .requests()
        .iter()
        .all(|r| r.status == StatusCode::SERVICE_UNAVAILABLE.as_u16()));
    assert_eq!(second.served().await, Some(json!("stored")));

    // The API comes back with a change.
    let v2 = document("2024-05-02T10:00:00Z", &json!("fresh"));
    second.fake.set_failure(SERVER_KEY, None);
    second.fake.set_document(SERVER_KEY, &v2);
    all_serve(&[&second], &json!("fresh")).await;
    second.app.stop().await;
}

#[tokio::test]
async fn a_redis_outage_never_stops_serving_or_updating() {
    let mut redis = RedisServer::start();
    let v1 = document("2024-05-01T10:00:00Z", &json!("first"));
    let a = Replica::start(&redis, Some(&v1)).await;
    let b = Replica::start(&redis, Some(&v1)).await;
    all_serve(&[&a, &b], &json!("first")).await;

    redis.stop();
    assert_eq!(a.served().await, Some(json!("first")));
    assert_eq!(b.served().await, Some(json!("first")));
    // Without the store each replica polls the API itself, so changes still arrive.
    let v2 = document("2024-05-02T10:00:00Z", &json!("during outage"));
    a.fake.set_document(SERVER_KEY, &v2);
    b.fake.set_document(SERVER_KEY, &v2);
    all_serve(&[&a, &b], &json!("during outage")).await;

    // Redis comes back empty; the replicas settle on one holder again, which re-stores the
    // document, and a later change reaches both.
    redis.restart();
    let v3 = document("2024-05-03T10:00:00Z", &json!("after outage"));
    a.fake.set_document(SERVER_KEY, &v3);
    b.fake.set_document(SERVER_KEY, &v3);
    all_serve(&[&a, &b], &json!("after outage")).await;
    a.app.stop().await;
    b.app.stop().await;
}

#[tokio::test]
async fn a_lease_left_by_a_crashed_holder_is_taken_over_when_it_expires() {
    use evaluation_proxy::flagsmith::sync::{environment_id, FlagsmithSyncSettings};
    use evaluation_proxy::store::{RedisSettings, RedisStore, Store};

    let redis = RedisServer::start();
    // A holder that crashed: its lease stays until its TTL runs out, and it never polls.
    let settings = RedisSettings {
        prefix: "fsreplicas".into(),
        ..RedisSettings::new(redis.url())
    };
    let crashed = RedisStore::connect(&settings).await.unwrap();
    let ttl = FlagsmithSyncSettings::lease_ttl_for(Duration::from_secs(1));
    let lease = format!("flagsmith:{}", environment_id(SERVER_KEY));
    assert!(crashed.try_acquire(&lease, "crashed", ttl).await.unwrap());
    let taken = Instant::now();

    let v1 = document("2024-05-01T10:00:00Z", &json!("first"));
    let replica = Replica::start(&redis, Some(&v1)).await;
    all_serve(&[&replica], &json!("first")).await;
    let elapsed = taken.elapsed();
    eprintln!("took over an abandoned lease after {elapsed:?} (TTL {ttl:?})");
    assert!(
        elapsed >= ttl - Duration::from_millis(100),
        "polled while another replica held the lease"
    );
    replica.app.stop().await;
}
