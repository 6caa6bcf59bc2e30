//! Black-box tests of cohorts: sync from a fake cohort API, membership targeting of users and
//! groups, readiness, and the SDK proxy-mode endpoints, on the memory store and on a real
//! `redis-server` (including two replicas sharing it).

mod support;

use std::io::Read;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use support::fake_amplitude::FakeAmplitude;
use support::redis_server::RedisServer;
use support::{eventually, TestApp};

const KEY: &str = "server-deployment-cohorts1";
const API: &str = "api-key-1";
const SECRET: &str = "secret-key-1";
const WAIT: Duration = Duration::from_secs(15);

/// Two flags: `user-flag` is on for members of user cohort `cu`, `org-flag` for orgs in group
/// cohort `cg` (group type `org name`).
fn flags(user_cohort: Option<&str>, group_cohort: Option<&str>) -> String {
    let flag = |key: &str, selector: Value, cohort: Option<&str>| {
        let mut segments = Vec::new();
        if let Some(cohort) = cohort {
            segments.push(json!({"conditions": [[{"selector": selector, "op": "set contains any", "values": [cohort]}]], "variant": "on"}));
        }
        segments.push(json!({"variant": "off"}));
        json!({"key": key, "variants": {"on": {"key": "on", "value": "on"}, "off": {"key": "off", "value": "off"}}, "segments": segments})
    };
    json!([
        flag(
            "user-flag",
            json!(["context", "user", "cohort_ids"]),
            user_cohort
        ),
        flag(
            "org-flag",
            json!(["context", "groups", "org name", "cohort_ids"]),
            group_cohort
        ),
    ])
    .to_string()
}

fn config(fake: &FakeAmplitude, extra: &str) -> String {
    format!(
        "projects:\n  - apiKey: {API}\n    secretKey: {SECRET}\n    deployments:\n      - key: {KEY}\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  serverUrl: {url}\n  cohortServerUrl: {url}\n  analyticsServerUrl: {url}/unused-analytics\n\
         \x20 flagSyncIntervalMillis: 100\n  metrics:\n    port: 0\n{extra}",
        url = fake.url
    )
}

async fn fake() -> FakeAmplitude {
    let fake = FakeAmplitude::start("unused").await;
    fake.allow_cohort_credentials(API, SECRET);
    fake
}

/// `user-flag` and `org-flag` variant keys for a user.
async fn variants(app: &TestApp, user: Value) -> (String, String) {
    let response = app
        .post("/sdk/v2/vardata", KEY)
        .body(user.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let key = |flag: &str| body[flag]["key"].as_str().unwrap_or("none").to_owned();
    (key("user-flag"), key("org-flag"))
}

async fn user_variant(app: &TestApp, user_id: &str) -> String {
    variants(app, json!({"user_id": user_id})).await.0
}

async fn eventually_user_variant(app: &TestApp, user_id: &str, expected: &str) {
    eventually(WAIT, || async {
        user_variant(app, user_id).await == expected
    })
    .await;
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn basic(api: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{api}:{secret}")))
}

/// `GET /sdk/v1/cohort/{id}` with the Basic keys `api:secret`, sent.
async fn get_cohort(app: &TestApp, id: &str, api: &str, secret: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/sdk/v1/cohort/{id}")))
        .header("Authorization", basic(api, secret))
        .send()
        .await
        .unwrap()
}

/// The JSON body of `GET /sdk/v1/cohort/{id}` with the configured project's keys.
async fn cohort_body(app: &TestApp, id: &str) -> Value {
    get_cohort(app, id, API, SECRET).await.json().await.unwrap()
}

async fn memberships(app: &TestApp, group_type: &str, name: &str) -> Value {
    let path = format!(
        "/sdk/v2/memberships/{}/{name}",
        group_type.replace(' ', "%20")
    );
    app.get(&path, KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The scenario both stores must pass: sync, targeting, 204 refresh, diff, empty cohort,
/// group-type change and removal.
async fn sync_and_targeting(redis: Option<&RedisServer>) {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), Some("cg")));
    fake.set_cohort("cu", "User", 100, &["u1", "u2", "u1"]);
    fake.set_cohort("cg", "org name", 100, &["acme"]);
    let redis_yaml = redis
        .map(|r| format!("  redis:\n    uri: {}\n", r.url()))
        .unwrap_or_default();
    let app = TestApp::spawn(
        &config(
            &fake,
            &format!("  cohortSyncIntervalMillis: 300\n{redis_yaml}"),
        ),
        &[],
    )
    .await;
    app.wait_ready().await;

    // Members and non-members, users and groups.
    assert_eq!(user_variant(&app, "u1").await, "on");
    assert_eq!(user_variant(&app, "u3").await, "off");
    let org = |name: &str| json!({"user_id": "u9", "groups": {"org name": [name]}});
    assert_eq!(variants(&app, org("acme")).await.1, "on");
    assert_eq!(variants(&app, org("other")).await.1, "off");
    assert_eq!(memberships(&app, "User", "u1").await, json!(["cu"]));
    assert_eq!(memberships(&app, "org name", "acme").await, json!(["cg"]));
    // A numeric user id gets no lookup; a client-sent cohort list is replaced when targeted.
    assert_eq!(
        variants(&app, json!({"user_id": "u3", "cohort_ids": ["cu"]}))
            .await
            .0,
        "off"
    );

    // The download was authenticated and sized; refreshes send lastModified and get 204.
    let first = &fake.cohort_requests("cu")[0];
    assert_eq!(
        first.authorization.as_deref(),
        Some(basic(API, SECRET).as_str())
    );
    assert_eq!(
        first.query.get("maxCohortSize").map(String::as_str),
        Some("2147483647")
    );
    assert!(first
        .library
        .as_deref()
        .unwrap()
        .starts_with("evaluation-proxy/"));
    eventually(WAIT, || async {
        fake.cohort_requests("cu")
            .iter()
            .any(|r| r.query.get("lastModified").map(String::as_str) == Some("100"))
    })
    .await;

    // A new version: u2 leaves, u4 joins; the blob follows.
    fake.set_cohort("cu", "User", 200, &["u1", "u4"]);
    eventually_user_variant(&app, "u4", "on").await;
    assert_eq!(user_variant(&app, "u2").await, "off");
    assert_eq!(user_variant(&app, "u1").await, "on");
    let blob: Value = cohort_body(&app, "cu").await;
    assert_eq!(
        blob,
        json!({"cohortId": "cu", "groupType": "User", "lastModified": 200, "size": 2, "memberIds": ["u1", "u4"]})
    );

    // The cohort becomes empty: nobody keeps it (a reference bug).
    fake.set_cohort("cu", "User", 300, &[]);
    eventually_user_variant(&app, "u1", "off").await;
    assert_eq!(memberships(&app, "User", "u1").await, json!([]));

    // Group-type change: the old index entries go, the new ones come.
    fake.set_cohort("cg", "User", 400, &["acme"]);
    eventually(WAIT, || async {
        memberships(&app, "org name", "acme").await == json!([])
    })
    .await;
    assert_eq!(memberships(&app, "User", "acme").await, json!(["cg"]));
    fake.set_cohort("cg", "org name", 500, &["acme"]);
    eventually(WAIT, || async {
        memberships(&app, "org name", "acme").await == json!(["cg"])
    })
    .await;
    assert_eq!(memberships(&app, "User", "acme").await, json!([]));

    // No flag targets `cu` any more: it is removed.
    fake.set_flags(KEY, &flags(None, Some("cg")));
    eventually(WAIT, || async {
        get_cohort(&app, "cu", API, SECRET).await.status() == 404
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn memory_store_syncs_targets_and_refreshes_cohorts() {
    sync_and_targeting(None).await;
}

#[tokio::test]
async fn redis_store_syncs_targets_and_refreshes_cohorts() {
    let redis = RedisServer::start();
    sync_and_targeting(Some(&redis)).await;
}

#[tokio::test]
async fn two_replicas_on_one_redis_download_each_cohort_once() {
    let redis = RedisServer::start();
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), Some("cg")));
    fake.set_cohort("cu", "User", 100, &["u1"]);
    fake.set_cohort("cg", "org name", 100, &["acme"]);
    // A long interval: each replica makes exactly its first pass within the test.
    let yaml = config(
        &fake,
        &format!(
            "  cohortSyncIntervalMillis: 600000\n  redis:\n    uri: {}\n",
            redis.url()
        ),
    );
    let (a, b) = tokio::join!(TestApp::spawn(&yaml, &[]), TestApp::spawn(&yaml, &[]));
    a.wait_ready().await;
    b.wait_ready().await;
    for app in [&a, &b] {
        assert_eq!(user_variant(app, "u1").await, "on");
        assert_eq!(
            variants(app, json!({"groups": {"org name": ["acme"]}}))
                .await
                .1,
            "on"
        );
    }
    assert_eq!(
        fake.cohort_requests("cu").len(),
        1,
        "one replica downloads cu"
    );
    assert_eq!(
        fake.cohort_requests("cg").len(),
        1,
        "one replica downloads cg"
    );
    a.stop().await;
    b.stop().await;
}

/// `user-flag` of users u1, u2 and u3.
async fn state(app: &TestApp) -> (String, String, String) {
    (
        user_variant(app, "u1").await,
        user_variant(app, "u2").await,
        user_variant(app, "u3").await,
    )
}

/// Both replicas cache membership lookups; a changed cohort must reach each one through the
/// change signal, within a second of the first replica serving it.
#[tokio::test]
async fn a_changed_cohort_is_seen_on_every_replica_within_a_second() {
    let redis = RedisServer::start();
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    fake.set_cohort("cu", "User", 100, &["u1", "u3"]);
    let yaml = config(
        &fake,
        &format!(
            "  cohortSyncIntervalMillis: 200\n  redis:\n    uri: {}\n",
            redis.url()
        ),
    );
    let (a, b) = tokio::join!(TestApp::spawn(&yaml, &[]), TestApp::spawn(&yaml, &[]));
    a.wait_ready().await;
    b.wait_ready().await;
    let old = ("on".to_owned(), "off".to_owned(), "on".to_owned());
    let new = ("off".to_owned(), "on".to_owned(), "on".to_owned());
    for app in [&a, &b] {
        // Twice: the second answers come from the replica's membership cache.
        assert_eq!(state(app).await, old);
        assert_eq!(state(app).await, old);
    }
    fake.set_cohort("cu", "User", 200, &["u2", "u3"]);
    let started = std::time::Instant::now();
    let mut seen: [Option<std::time::Instant>; 2] = [None, None];
    while seen.iter().any(Option::is_none) {
        assert!(
            started.elapsed() < WAIT,
            "not seen by both replicas: {seen:?}"
        );
        for (i, app) in [&a, &b].into_iter().enumerate() {
            if seen[i].is_none() && state(app).await == new {
                seen[i] = Some(std::time::Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (Some(first), Some(second)) = (seen[0], seen[1]) else {
        unreachable!()
    };
    let apart = if first > second {
        first - second
    } else {
        second - first
    };
    assert!(apart <= Duration::from_secs(1), "replicas {apart:?} apart");
    for app in [&a, &b] {
        assert_eq!(state(app).await, new);
        assert_eq!(memberships(app, "User", "u1").await, json!([]));
        assert_eq!(memberships(app, "User", "u2").await, json!(["cu"]));
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn too_large_cohorts_are_reported_and_flags_still_served() {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    fake.set_cohort("cu", "User", 100, &["u1", "u2", "u3"]);
    let app = TestApp::spawn(&config(&fake, "  maxCohortSize: 2\n"), &[]).await;
    app.wait_ready().await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200);
    let errors = body["cohort_errors"].to_string();
    assert!(
        errors.contains("cohort cu") && errors.contains("maximum cohort size 2"),
        "{body}"
    );
    assert_eq!(fake.cohort_requests("cu")[0].query["maxCohortSize"], "2");
    assert_eq!(
        user_variant(&app, "u1").await,
        "off",
        "flag served without the cohort"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", app.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("amplitude_proxy_cohort_too_large_total"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_targeted_cohort_holds_readiness_until_loaded_and_202_and_5xx_are_retried() {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    fake.set_cohort("cu", "User", 100, &["u1"]);
    // 100+200+400+800+1600 ms of retries keep the cohort pending for a while.
    fake.fail_next("/sdk/v1/cohort/cu", &[202, 503, 500, 202, 502]);
    let app = TestApp::spawn(&config(&fake, ""), &[]).await;
    eventually(WAIT, || async {
        let (status, body) = readyz(&app).await;
        status == 503
            && body["reasons"]
                .to_string()
                .contains("cohort cu not loaded yet")
    })
    .await;
    let port_open = app
        .post("/sdk/v2/vardata", KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(port_open.status(), 200, "flags are served meanwhile");
    app.wait_ready().await;
    assert_eq!(fake.cohort_requests("cu").len(), 6);
    assert_eq!(user_variant(&app, "u1").await, "on");
    app.stop().await;
}

#[tokio::test]
async fn any_field_order_is_ingested() {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    fake.set_cohort_body(
        "cu",
        7,
        2,
        r#"{"memberIds":["u1","u2"],"size":2,"lastModified":7,"groupType":"User","cohortId":"cu"}"#,
    );
    let app = TestApp::spawn(&config(&fake, ""), &[]).await;
    app.wait_ready().await;
    assert_eq!(user_variant(&app, "u2").await, "on");
    app.stop().await;
}

/// A cohort whose member list repeats members far apart (across the chunks the download
/// streams into the store) is stored, sized and served with each member once.
async fn duplicates_across_chunks(redis: Option<&RedisServer>) {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    // 25,000 ids, 20,000 distinct: 5,000-9,999 come again at the end.
    let ids: Vec<String> = (0..20_000)
        .chain(5_000..10_000)
        .map(|i| format!("u{i}"))
        .collect();
    let body = json!({"cohortId": "cu", "groupType": "User", "lastModified": 100, "size": ids.len(), "memberIds": ids});
    fake.set_cohort_body("cu", 100, ids.len(), &body.to_string());
    let redis_yaml = redis
        .map(|r| format!("  redis:\n    uri: {}\n", r.url()))
        .unwrap_or_default();
    let app = TestApp::spawn(&config(&fake, &redis_yaml), &[]).await;
    app.wait_ready().await;
    let blob: Value = cohort_body(&app, "cu").await;
    assert_eq!(blob["size"], 20_000);
    let mut served: Vec<&str> = blob["memberIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(served.len(), 20_000);
    served.sort_unstable();
    served.dedup();
    assert_eq!(served.len(), 20_000, "each member once");
    for member in ["u0", "u7000", "u19999"] {
        assert_eq!(memberships(&app, "User", member).await, json!(["cu"]));
    }
    app.stop().await;
}

#[tokio::test]
async fn duplicates_across_chunks_are_stored_once_in_memory() {
    duplicates_across_chunks(None).await;
}

#[tokio::test]
async fn duplicates_across_chunks_are_stored_once_in_redis() {
    let redis = RedisServer::start();
    duplicates_across_chunks(Some(&redis)).await;
}

#[tokio::test]
async fn cohort_and_membership_endpoints_follow_the_reference_statuses() {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    fake.set_cohort("cu", "User", 100, &["u2", "u1"]);
    let app = TestApp::spawn(&config(&fake, ""), &[]).await;
    app.wait_ready().await;
    let get = |path: &str, auth: Option<String>| {
        let mut request = app.client.get(app.url(path));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request
    };
    let ok = Some(basic(API, SECRET));

    for auth in [
        None,
        Some(basic(API, "wrong")),
        Some("Basic %%%".into()),
        Some(format!("Api-Key {KEY}")),
    ] {
        let response = get("/sdk/v1/cohort/cu", auth).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"error": "Invalid api or secret key"}));
    }
    let response = get("/sdk/v1/cohort/nope", ok.clone()).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = get(
        "/sdk/v1/cohort/cu?maxCohortSize=1&lastModified=100",
        ok.clone(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        413,
        "size is checked before lastModified"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        "Cohort cu sized 2 is greater than max cohort size 1"
    );
    let response = get(
        "/sdk/v1/cohort/cu?lastModified=100&maxCohortSize=x",
        ok.clone(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    let response = get("/sdk/v1/cohort/cu?lastModified=99", ok.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "only an exact lastModified is not modified"
    );
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.headers()["content-type"], "application/json");
    let expected = r#"{"cohortId":"cu","groupType":"User","lastModified":100,"size":2,"memberIds":["u1","u2"]}"#;
    assert_eq!(response.text().await.unwrap(), expected);

    for (accept, gzip) in [
        ("gzip, deflate", true),
        ("identity", false),
        ("gzip;q=0", false),
    ] {
        let response = get("/sdk/v1/cohort/cu", ok.clone())
            .header("Accept-Encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-encoding").is_some(),
            gzip,
            "{accept}"
        );
        let bytes = response.bytes().await.unwrap();
        let text = if gzip {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .unwrap();
            text
        } else {
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        assert_eq!(text, expected);
    }

    let response = app
        .client
        .get(app.url("/sdk/v2/memberships/User/u1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .get("/sdk/v2/memberships/User/u1", "unknown-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(memberships(&app, "User", "u1").await, json!(["cu"]));
    assert_eq!(memberships(&app, "User", "nobody").await, json!([]));
    let metrics = reqwest::get(format!("http://{}/metrics", app.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "amplitude_proxy_get_cohort_request_total",
        "amplitude_proxy_get_cohort_request_error_total",
        "amplitude_proxy_get_members_request_total",
        "amplitude_proxy_get_members_request_error_total",
        "amplitude_proxy_cohort_download_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    app.stop().await;
}

#[tokio::test]
async fn with_several_projects_the_keys_the_cohort_api_accepts_are_used() {
    let fake = fake().await;
    fake.set_flags(KEY, &flags(Some("cu"), None));
    fake.set_cohort("cu", "User", 100, &["u1"]);
    let yaml = format!(
        "projects:\n  - apiKey: other-api\n    secretKey: other-secret\n    deployments:\n\
         \x20     - key: other-deployment\n        flagsFile: empty.json\n\
         \x20 - apiKey: {API}\n    secretKey: {SECRET}\n    deployments:\n      - key: {KEY}\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  serverUrl: {url}\n  cohortServerUrl: {url}\n  analyticsServerUrl: {url}/unused-analytics\n\
         \x20 metrics:\n    port: 0\n",
        url = fake.url
    );
    let app = TestApp::spawn(&yaml, &[("empty.json", "[]")]).await;
    app.wait_ready().await;
    assert_eq!(user_variant(&app, "u1").await, "on");
    let auths: Vec<String> = fake
        .cohort_requests("cu")
        .into_iter()
        .filter_map(|r| r.authorization)
        .collect();
    assert_eq!(
        auths,
        [basic("other-api", "other-secret"), basic(API, SECRET)]
    );
    let response = get_cohort(&app, "cu", "other-api", "other-secret").await;
    assert_eq!(
        response.status(),
        200,
        "any configured project's keys are accepted"
    );
    app.stop().await;
}
