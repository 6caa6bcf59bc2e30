//! Black-box tests of the Amplitude-compatible proxy: the app on port 0, with flags from a file
//! or from a fake Amplitude upstream.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use support::fake_amplitude::FakeAmplitude;
use support::{eventually, example_flags, TestApp};

const KEY: &str = "client-local-example-deployment";

fn local_config() -> String {
    format!(
        "projects:\n  - deployments:\n      - key: {KEY}\n        flagsFile: flags.json\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  metrics:\n    port: 0\n"
    )
}

async fn local_app() -> TestApp {
    let app = TestApp::spawn(&local_config(), &[("flags.json", &example_flags())]).await;
    app.wait_ready().await;
    app
}

fn user() -> Value {
    json!({"user_id": "u1", "device_id": "d1", "country": "Canada", "user_properties": {"plan": "pro"}})
}

/// POSTs `body` with the deployment key and returns the status and JSON body.
async fn post_json(
    app: &TestApp,
    path: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    json_of(app.post(path, key).body(body).send().await.unwrap()).await
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, value)
}

/// The example flags' results must agree with each other: the banner targets Canada and paid
/// plans, and new-pricing is on exactly for the experiment's treatment.
fn assert_example_results(results: &Value) {
    assert_eq!(
        results["welcome-banner"],
        json!({"key": "on", "value": "on", "payload": {"title": "Welcome back!"},
        "metadata": {"deployed": true, "evaluationMode": "local", "flagType": "release", "flagVersion": 4, "segmentName": "North America, paid plans"}})
    );
    let arm = results["checkout-experiment"]["key"].as_str().unwrap();
    assert!(arm == "control" || arm == "treatment", "{arm}");
    let pricing = results["new-pricing"]["key"].as_str().unwrap();
    assert_eq!(pricing == "on", arm == "treatment");
}

#[tokio::test]
async fn serves_flags_from_a_file_with_and_without_gzip() {
    let app = local_app().await;
    let response = app.get("/sdk/v2/flags", KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.unwrap();
    assert_eq!(body, example_flags(), "flags are re-served byte for byte");

    let response = app
        .get("/sdk/v2/flags", KEY)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.unwrap();
    let mut decoded = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, example_flags());
    app.stop().await;
}

#[tokio::test]
async fn remote_evaluation_by_header_body_and_query() {
    let app = local_app().await;
    let user_json = user().to_string();
    for encoded in [
        STANDARD.encode(&user_json),
        URL_SAFE_NO_PAD.encode(&user_json),
    ] {
        let response = app
            .get("/sdk/v2/vardata?v=0", KEY)
            .header("X-Amp-Exp-User", encoded)
            .send()
            .await
            .unwrap();
        let (status, results) = json_of(response).await;
        assert_eq!(status, 200);
        assert_example_results(&results);
        assert_eq!(
            results["dark-mode"]["key"], "on",
            "v2 keeps undeployed flags"
        );
    }
    let response = app
        .post("/sdk/v2/vardata", KEY)
        .body(user_json.clone())
        .send()
        .await
        .unwrap();
    let (status, results) = json_of(response).await;
    assert_eq!(status, 200);
    assert_example_results(&results);

    // v1 drops default variants and undeployed flags.
    let response = app
        .post("/v1/vardata", KEY)
        .body(user_json.clone())
        .send()
        .await
        .unwrap();
    let (_, v1) = json_of(response).await;
    assert!(v1.get("dark-mode").is_none());
    assert!(v1
        .as_object()
        .unwrap()
        .values()
        .all(|v| v["metadata"]["default"] != json!(true)));
    let query = "/v1/vardata?user_id=u1&device_id=d1&context=%7B%22country%22%3A%22Canada%22%2C%22user_properties%22%3A%7B%22plan%22%3A%22pro%22%7D%7D";
    let (status, v1_get) = json_of(app.get(query, KEY).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v1_get, v1);
    let (_, sdk_v1) = json_of(
        app.get("/sdk/vardata", KEY)
            .header("X-Amp-Exp-User", STANDARD.encode(&user_json))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(sdk_v1, v1);
    app.stop().await;
}

#[tokio::test]
async fn flag_keys_select_flags_and_their_dependencies() {
    let app = local_app().await;
    let keys = URL_SAFE_NO_PAD.encode(r#"["new-pricing"]"#);
    let response = app
        .post("/sdk/v2/vardata", KEY)
        .header("X-Amp-Exp-Flag-Keys", keys)
        .body(user().to_string())
        .send()
        .await
        .unwrap();
    let (_, results) = json_of(response).await;
    let mut keys: Vec<&str> = results
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["checkout-experiment", "new-pricing"]);
    let (_, results) = post_json(&app, "/sdk/v2/vardata?flag_key=welcome-banner", KEY, "{}").await;
    assert_eq!(
        results,
        json!({"welcome-banner": {"key": "off", "metadata": {"default": true, "deployed": true, "evaluationMode": "local", "flagType": "release", "flagVersion": 4, "segmentName": "All Other Users"}}})
    );
    app.stop().await;
}

#[tokio::test]
async fn authentication_failures_are_401_with_json() {
    let app = local_app().await;
    for request in [
        app.client.get(app.url("/sdk/v2/flags")),
        app.client
            .get(app.url("/sdk/v2/flags"))
            .header("Authorization", "Api-Key"),
        app.client
            .get(app.url("/sdk/v2/flags"))
            .header("Authorization", "Bearer x"),
        app.get("/sdk/v2/flags", "unknown-key"),
        app.get("/sdk/v2/vardata", "unknown-key"),
        app.post("/v1/vardata", "unknown-key").body("{}"),
    ] {
        let (status, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(status, 401);
        assert_eq!(body, json!({"error": "Invalid deployment"}));
    }
    app.stop().await;
}

#[tokio::test]
async fn malformed_input_is_400_never_500() {
    let app = local_app().await;
    let cases = [
        app.get("/sdk/v2/vardata", KEY)
            .header("X-Amp-Exp-User", "%%%not-base64"),
        app.get("/sdk/v2/vardata", KEY)
            .header("X-Amp-Exp-User", STANDARD.encode("[1,2]")),
        app.get("/sdk/v2/vardata", KEY)
            .header("X-Amp-Exp-User", STANDARD.encode("{\"a\":")),
        app.get("/sdk/v2/vardata", KEY)
            .header("X-Amp-Exp-Flag-Keys", STANDARD.encode("{}")),
        app.post("/sdk/v2/vardata", KEY).body("not json"),
        app.post("/sdk/v2/vardata", KEY).body(""),
        app.post("/sdk/v2/vardata", KEY).body("\"a string\""),
        app.get("/v1/vardata?context=%7Bbroken", KEY),
    ];
    for request in cases {
        let (status, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].is_string());
    }
    let huge = format!("{{\"user_id\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (status, body) = post_json(&app, "/sdk/v2/vardata", KEY, huge).await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());
    let (status, _) = json_of(app.get("/no/such/path", KEY).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(
        app.client
            .delete(app.url("/sdk/v2/vardata"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = json_of(app.client.post(app.url("/shutdown")).send().await.unwrap()).await;
    assert_eq!(status, 404, "there is no unauthenticated shutdown URL");
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_sdk_headers() {
    let app = local_app().await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/sdk/v2/vardata"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .header(
            "Access-Control-Request-Headers",
            "authorization,x-amp-exp-user",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("x-amp-exp-user") && allowed.contains("authorization"));
    app.stop().await;
}

#[tokio::test]
async fn flags_file_changes_are_picked_up_and_bad_files_keep_the_last_good_flags() {
    let app = local_app().await;
    let one_flag =
        r#"[{"key":"only","segments":[{"variant":"on"}],"variants":{"on":{"key":"on"}}}]"#;
    std::fs::write(app.file("flags.json"), one_flag).unwrap();
    let probe = |app: &TestApp| app.get("/sdk/v2/flags", KEY).send();
    eventually(Duration::from_secs(5), || async {
        probe(&app).await.unwrap().text().await.unwrap() == one_flag
    })
    .await;
    std::fs::write(app.file("flags.json"), "[{\"broken\"").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(probe(&app).await.unwrap().text().await.unwrap(), one_flag);
    app.stop().await;
}

#[tokio::test]
async fn status_health_readiness_and_metrics() {
    let app = local_app().await;
    let response = app.client.get(app.url("/status")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "OK");
    let (status, _) = json_of(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    app.post("/sdk/v2/vardata", KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    let metrics = app
        .client
        .get(format!("http://{}/metrics", app.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "amplitude_proxy_request_total",
        "amplitude_proxy_evaluation_request_total",
        "amplitude_proxy_evaluation_total",
        "amplitude_proxy_flags_fetch_total",
        "amplitude_proxy_http_server_requests_seconds_bucket",
        "amplitude_proxy_flags_snapshot_age_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readiness_waits_for_flags_and_unreadable_files_are_not_ready() {
    let config = local_config();
    let app = TestApp::spawn(&config, &[]).await; // flags.json does not exist yet
    let (status, body) = json_of(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503);
    assert!(
        body["reasons"][0].as_str().unwrap().contains("not loaded"),
        "{body}"
    );
    // Once the sync has tried, readiness says why.
    let readyz = app.url("/readyz");
    eventually(Duration::from_secs(5), || async {
        let body: Value = app
            .client
            .get(&readyz)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("last error: cannot read"))
    })
    .await;
    let (status, _) = post_json(&app, "/sdk/v2/vardata", KEY, "{}").await;
    assert_eq!(
        status, 503,
        "a configured deployment without flags yet is unavailable, not unknown"
    );
    std::fs::write(app.file("flags.json"), example_flags()).unwrap();
    app.wait_ready().await;
    app.stop().await;
}

const MANAGEMENT_KEY: &str = "management-key-1";

fn vendor_config(fake: &FakeAmplitude) -> String {
    format!(
        "projects:\n  - apiKey: api-key-1\n    secretKey: secret-key-1\n    managementKey: {MANAGEMENT_KEY}\n\
         configuration:\n  port: 0\n  host: 127.0.0.1\n  serverUrl: {url}\n  managementServerUrl: {url}\n\
         \x20 analyticsServerUrl: {url}/2/httpapi\n\
         \x20 deploymentSyncIntervalMillis: 200\n  flagSyncIntervalMillis: 200\n  metrics:\n    port: 0\n",
        url = fake.url
    )
}

#[tokio::test]
async fn syncs_deployments_and_flags_from_amplitude_with_retries_and_paging() {
    let fake = FakeAmplitude::start(MANAGEMENT_KEY).await;
    fake.set_deployments(&[
        ("client-deployment-aaaa1", false),
        ("client-deployment-bbbb2", false),
        ("client-deleted-cccc3", true),
    ]);
    fake.set_page_size(1);
    fake.set_flags("client-deployment-aaaa1", &example_flags());
    fake.set_flags("client-deployment-bbbb2", "[]");
    // 100 + 200 + 400 ms of retries: long enough to observe readiness before the first sync.
    fake.fail_next("/api/1/deployments", &[500, 429, 503]);
    fake.fail_next("/sdk/v2/flags", &[502, 503]);
    let app = TestApp::spawn(&vendor_config(&fake), &[]).await;
    let (status, body) = json_of(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "not ready before the first sync: {body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("deployments not fetched yet"),
        "{body}"
    );
    app.wait_ready().await;

    let (status, results) = post_json(
        &app,
        "/sdk/v2/vardata",
        "client-deployment-aaaa1",
        user().to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_example_results(&results);
    let (status, results) =
        post_json(&app, "/sdk/v2/vardata", "client-deployment-bbbb2", "{}").await;
    assert_eq!((status, results), (200, json!({})));
    let (status, _) = json_of(
        app.get("/sdk/v2/flags", "client-deleted-cccc3")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "deleted deployments are not accepted");

    let flag_requests = fake.requests("/sdk/v2/flags");
    let first = &flag_requests[0];
    assert_eq!(first.query.get("v").map(String::as_str), Some("0"));
    assert!(first
        .library
        .as_deref()
        .unwrap()
        .starts_with("evaluation-proxy/"));
    let listings = fake.requests("/api/1/deployments");
    assert_eq!(
        listings[0].authorization.as_deref(),
        Some("Bearer management-key-1")
    );
    assert!(
        listings.iter().any(|r| r.query.contains_key("cursor")),
        "nextCursor is followed"
    );
    app.stop().await;
}

#[tokio::test]
async fn deployments_added_and_removed_upstream_follow_within_a_sync() {
    let fake = FakeAmplitude::start(MANAGEMENT_KEY).await;
    fake.set_deployments(&[("client-deployment-aaaa1", false)]);
    fake.set_flags("client-deployment-aaaa1", "[]");
    fake.set_flags("client-deployment-new-dddd4", &example_flags());
    let app = TestApp::spawn(&vendor_config(&fake), &[]).await;
    app.wait_ready().await;
    let status_of = |key: &'static str| {
        let request = app.get("/sdk/v2/flags", key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_of("client-deployment-new-dddd4").await, 401);
    fake.set_deployments(&[("client-deployment-new-dddd4", false)]);
    eventually(Duration::from_secs(5), || async {
        status_of("client-deployment-new-dddd4").await == 200
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        status_of("client-deployment-aaaa1").await == 401
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn vendor_failures_keep_serving_the_last_known_good_flags() {
    let fake = FakeAmplitude::start(MANAGEMENT_KEY).await;
    fake.set_deployments(&[("client-deployment-aaaa1", false)]);
    fake.set_flags("client-deployment-aaaa1", &example_flags());
    let app = TestApp::spawn(&vendor_config(&fake), &[]).await;
    app.wait_ready().await;
    // Every request now fails with 500 (retried, then given up).
    fake.fail_next("/sdk/v2/flags", &[500; 64]);
    fake.fail_next("/api/1/deployments", &[500; 64]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, results) = post_json(
        &app,
        "/sdk/v2/vardata",
        "client-deployment-aaaa1",
        user().to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_example_results(&results);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_stops_listening() {
    let app = local_app().await;
    let addr = app.addr;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}
