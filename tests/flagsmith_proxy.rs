//! Black-box tests of the Flagsmith Edge Proxy API: the app on port 0, with environment
//! documents from a fake Flagsmith API or from files. The document is the spec's Appendix A
//! (`shared/spec/flagsmith-edge-proxy.md`).

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::fake_flagsmith::FakeFlagsmith;
use support::{eventually, TestApp};

const SERVER_KEY: &str = "ser.server_key_1";
const CLIENT_KEY: &str = "client_key_1";

/// Appendix A's document with `updated_at` and the value of `feature_b`'s default as given.
fn document(updated_at: &str, feature_b_default: Value) -> String {
    json!({
        "api_key": CLIENT_KEY,
        "name": "Development",
        "updated_at": updated_at,
        "project": {
            "name": "p",
            "hide_disabled_flags": false,
            "server_key_only_feature_ids": [3],
            "segments": [
                {"id": 10, "name": "no_plan",
                 "rules": [{"type": "ALL", "conditions": [], "rules": [
                     {"type": "ANY", "rules": [], "conditions": [{"operator": "IS_NOT_SET", "property_": "plan", "value": null}]}]}],
                 "feature_states": [
                     {"feature": {"id": 1, "name": "feature_a", "type": "STANDARD"}, "enabled": true,
                      "feature_state_value": "from_segment_10", "django_id": 201, "feature_segment": {"priority": 0},
                      "multivariate_feature_state_values": []}]},
                {"id": 11, "name": "development",
                 "rules": [{"type": "ALL", "conditions": [], "rules": [
                     {"type": "ALL", "rules": [], "conditions": [{"operator": "EQUAL", "property_": "$.environment.name", "value": "Development"}]}]}],
                 "feature_states": [
                     {"feature": {"id": 2, "name": "feature_b", "type": "STANDARD"}, "enabled": false,
                      "feature_state_value": 42, "django_id": 202, "feature_segment": {"priority": 1},
                      "multivariate_feature_state_values": []}]}
            ]
        },
        "feature_states": [
            {"feature": {"id": 1, "name": "feature_a", "type": "STANDARD"}, "enabled": false,
             "feature_state_value": "default_a", "django_id": 101, "multivariate_feature_state_values": []},
            {"feature": {"id": 2, "name": "feature_b", "type": "STANDARD"}, "enabled": true,
             "feature_state_value": feature_b_default, "django_id": 102, "multivariate_feature_state_values": []},
            {"feature": {"id": 3, "name": "server_only", "type": "STANDARD"}, "enabled": true,
             "feature_state_value": true, "django_id": 103, "multivariate_feature_state_values": []},
            {"feature": {"id": 4, "name": "mv", "type": "MULTIVARIATE"}, "enabled": true,
             "feature_state_value": "control", "django_id": 104,
             "multivariate_feature_state_values": [
                 {"id": 9001, "percentage_allocation": 30, "multivariate_feature_option": {"value": "red"}},
                 {"id": 9002, "percentage_allocation": 30, "multivariate_feature_option": {"value": 7}}]}
        ],
        "identity_overrides": [
            {"identifier": "vip", "identity_features": [
                {"feature": {"id": 1, "name": "feature_a", "type": "STANDARD"}, "enabled": true,
                 "feature_state_value": "vip_value", "django_id": 301, "multivariate_feature_state_values": []}]}
        ]
    })
    .to_string()
}

fn default_document() -> String {
    document("2024-05-01T10:20:30.123456+00:00", Value::Null)
}

fn flag(id: u64, name: &str, kind: &str, enabled: bool, value: Value) -> Value {
    json!({"feature": {"id": id, "name": name, "type": kind}, "enabled": enabled, "feature_state_value": value})
}

fn client_flags() -> Value {
    json!([
        flag(1, "feature_a", "STANDARD", true, json!("from_segment_10")),
        flag(2, "feature_b", "STANDARD", false, json!(42)),
        flag(4, "mv", "MULTIVARIATE", true, json!("control")),
    ])
}

fn server_flags() -> Value {
    json!([
        flag(1, "feature_a", "STANDARD", true, json!("from_segment_10")),
        flag(2, "feature_b", "STANDARD", false, json!(42)),
        flag(3, "server_only", "STANDARD", true, json!(true)),
        flag(4, "mv", "MULTIVARIATE", true, json!("control")),
    ])
}

/// `configuration:` with the Flagsmith section; `environments` is YAML list text.
fn config(api_url: &str, environments: &str, extra: &str) -> String {
    format!(
        "configuration:\n  port: 0\n  host: 127.0.0.1\n  metrics:\n    port: 0\n  flagsmith:\n    \
         apiUrl: {api_url}\n    apiPollFrequencySeconds: 1\n    apiPollTimeoutSeconds: 2\n{extra}    \
         environments: {environments}\n"
    )
}

fn one_environment() -> String {
    format!("[{{serverSideKey: {SERVER_KEY}, clientSideKey: {CLIENT_KEY}}}]")
}

async fn api_app() -> (FakeFlagsmith, TestApp) {
    let fake = FakeFlagsmith::start().await;
    fake.set_document(SERVER_KEY, &default_document());
    let app = TestApp::spawn(&config(&fake.api_url, &one_environment(), ""), &[]).await;
    app.wait_ready().await;
    (fake, app)
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(content_type.as_deref(), Some("application/json"), "{body}");
    (status, value)
}

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(key) = key {
        request = request.header("X-Environment-Key", key);
    }
    send(request).await
}

async fn post(app: &TestApp, path: &str, key: &str, body: &Value) -> (u16, Value) {
    send(
        app.client
            .post(app.url(path))
            .header("X-Environment-Key", key)
            .json(body),
    )
    .await
}

#[tokio::test]
async fn flags_for_client_and_server_keys_with_and_without_slash() {
    let (_fake, app) = api_app().await;
    for path in ["/api/v1/flags/", "/api/v1/flags"] {
        assert_eq!(
            get(&app, path, Some(CLIENT_KEY)).await,
            (200, client_flags())
        );
        assert_eq!(
            get(&app, path, Some(SERVER_KEY)).await,
            (200, server_flags())
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn single_feature_query() {
    let (_fake, app) = api_app().await;
    let (status, body) = get(&app, "/api/v1/flags/?feature=feature_a", Some(CLIENT_KEY)).await;
    assert_eq!((status, body), (200, client_flags()[0].clone()));
    let not_found = json!({"status": "not_found", "message": "feature 'server_only' not found"});
    assert_eq!(
        get(&app, "/api/v1/flags/?feature=server_only", Some(CLIENT_KEY)).await,
        (404, not_found)
    );
    assert_eq!(
        get(&app, "/api/v1/flags/?feature=server_only", Some(SERVER_KEY)).await,
        (200, server_flags()[2].clone())
    );
    assert_eq!(
        get(&app, "/api/v1/flags/?feature=Feature_A", Some(CLIENT_KEY))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&app, "/api/v1/flags/?feature=", Some(CLIENT_KEY)).await,
        (200, client_flags())
    );
    app.stop().await;
}

#[tokio::test]
async fn identities_evaluate_overrides_splits_and_traits() {
    let (_fake, app) = api_app().await;
    let (status, vip) = get(&app, "/api/v1/identities/?identifier=vip", Some(CLIENT_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        vip,
        json!({"identifier": "vip", "traits": [], "flags": [
            flag(1, "feature_a", "STANDARD", true, json!("vip_value")),
            flag(2, "feature_b", "STANDARD", false, json!(42)),
            flag(4, "mv", "MULTIVARIATE", true, json!("control")),
        ]})
    );
    // Key order of the response is identifier, traits, flags.
    let text = app
        .client
        .get(app.url("/api/v1/identities?identifier=user1"))
        .header("X-Environment-Key", CLIENT_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(r#"{"identifier":"user1","traits":[],"flags":["#),
        "{text}"
    );
    let user1: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(user1["flags"][2]["feature_state_value"], "red");

    let traits = json!([
        {"trait_key": "plan", "trait_value": "gold"},
        {"trait_key": "age", "trait_value": 3, "transient": true},
        {"trait_key": "nothing"}
    ]);
    for path in ["/api/v1/identities/", "/api/v1/identities"] {
        let body = json!({"identifier": "user1", "traits": traits, "transient": true});
        let (status, result) = post(&app, path, CLIENT_KEY, &body).await;
        assert_eq!(status, 200);
        assert_eq!(
            result["traits"],
            json!([
                {"trait_key": "plan", "trait_value": "gold"},
                {"trait_key": "age", "trait_value": 3},
                {"trait_key": "nothing", "trait_value": null}
            ])
        );
        assert_eq!(
            result["flags"][0],
            flag(1, "feature_a", "STANDARD", false, json!("default_a"))
        );
        assert_eq!(result["flags"].as_array().unwrap().len(), 3);
    }
    // Server keys see server-only features; nothing is stored between requests.
    let (_, server) = post(
        &app,
        "/api/v1/identities/",
        SERVER_KEY,
        &json!({"identifier": "user1"}),
    )
    .await;
    assert_eq!(server["flags"].as_array().unwrap().len(), 4);
    assert_eq!(server["flags"][0]["feature_state_value"], "from_segment_10");
    app.stop().await;
}

#[tokio::test]
async fn identities_validation_errors_are_422_json() {
    let (_fake, app) = api_app().await;
    let (status, body) = get(&app, "/api/v1/identities/", Some(CLIENT_KEY)).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "identifier"]));
    for bad in [
        json!({"traits": []}),
        json!({"identifier": 5}),
        json!({"identifier": "u", "traits": null}),
        json!({"identifier": "u", "traits": [{"trait_value": 1}]}),
        json!({"identifier": "u", "traits": [{"trait_key": "k", "trait_value": {"a": 1}}]}),
        json!({"identifier": "u", "traits": [{"trait_key": "k", "trait_value": "x".repeat(2001)}]}),
    ] {
        // Validation comes before the key check, as in the reference.
        let (status, body) = post(&app, "/api/v1/identities/", "unknown", &bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["detail"].is_array());
    }
    let (status, _) = send(
        app.client
            .post(app.url("/api/v1/identities/"))
            .header("X-Environment-Key", CLIENT_KEY)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(r#"{"identifier":"u"}"#),
    )
    .await;
    assert_eq!(status, 422);
    let (status, body) = send(
        app.client
            .post(app.url("/api/v1/identities/"))
            .header("X-Environment-Key", CLIENT_KEY)
            .body(r#"{"identifier":"u"}"#),
    )
    .await;
    assert_eq!((status, &body["identifier"]), (200, &json!("u")));
    app.stop().await;
}

#[tokio::test]
async fn keys_and_status_codes() {
    let (_fake, app) = api_app().await;
    let unknown =
        |repr: &str| json!({"status": "unauthorized", "message": format!("unknown key {repr}")});
    for path in [
        "/api/v1/flags/",
        "/api/v1/identities/?identifier=x",
        "/api/v1/environment-document/",
        "/api/v1/environment-document",
    ] {
        assert_eq!(
            get(&app, path, None).await,
            (401, unknown("None")),
            "{path}"
        );
        assert_eq!(
            get(&app, path, Some("unknown")).await,
            (401, unknown("'unknown'")),
            "{path}"
        );
        assert_eq!(
            get(&app, path, Some("ser.unknown")).await,
            (401, unknown("'ser.unknown'")),
            "{path}"
        );
        assert_eq!(
            get(&app, path, Some("")).await,
            (401, unknown("''")),
            "{path}"
        );
    }
    let (status, _) = send(
        app.client
            .post(app.url("/api/v1/identities/"))
            .json(&json!({"identifier": "u"})),
    )
    .await;
    assert_eq!(status, 401);
    // The configured server key is only a server key; the reference's weak check is not used.
    assert_eq!(
        get(&app, "/api/v1/flags/", Some("server_key_1")).await.0,
        401
    );

    // The environment document: server-side keys only, both slash variants, as received.
    let (status, body) = get(&app, "/api/v1/environment-document/", Some(CLIENT_KEY)).await;
    assert_eq!(status, 403, "{body}");
    let expected: Value = serde_json::from_str(&default_document()).unwrap();
    for path in [
        "/api/v1/environment-document/",
        "/api/v1/environment-document",
    ] {
        let response = app
            .client
            .get(app.url(path))
            .header("x-environment-key", SERVER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        assert_eq!(text, expected.to_string(), "compact, key order kept");
    }
    // Large documents are served gzip-compressed to clients that accept it.
    let gzip_client = reqwest::Client::builder().gzip(true).build().unwrap();
    let response = gzip_client
        .get(app.url("/api/v1/environment-document/"))
        .header("x-environment-key", SERVER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), expected);
    let raw = app
        .client
        .get(app.url("/api/v1/environment-document/"))
        .header("x-environment-key", SERVER_KEY)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-encoding"], "gzip");

    // Unknown paths and methods answer JSON too.
    assert_eq!(get(&app, "/api/v1/traits/", Some(CLIENT_KEY)).await.0, 404);
    let (status, _) = send(app.client.post(app.url("/api/v1/analytics/flags/"))).await;
    assert_eq!(status, 404);
    let (status, _) = send(app.client.post(app.url("/api/v1/flags/"))).await;
    assert_eq!(status, 405);
    app.stop().await;
}

#[tokio::test]
async fn polls_with_if_modified_since_and_keeps_document_on_304() {
    let (fake, app) = api_app().await;
    eventually(Duration::from_secs(5), || {
        let fake = fake.clone();
        async move { fake.requests().iter().any(|r| r.status == 304) }
    })
    .await;
    let requests = fake.requests();
    assert_eq!(requests[0].if_modified_since, None);
    assert_eq!(requests[0].key.as_deref(), Some(SERVER_KEY));
    let conditional = requests.iter().find(|r| r.status == 304).unwrap();
    assert_eq!(
        conditional.if_modified_since.as_deref(),
        Some("Wed, 01 May 2024 10:20:30 GMT")
    );
    assert_eq!(
        get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await,
        (200, client_flags())
    );

    // A new document is picked up on a later poll.
    fake.set_document(SERVER_KEY, &document("2024-06-01T00:00:00Z", json!("new")));
    eventually(Duration::from_secs(5), || {
        let app = &app;
        async move {
            let (_, doc) = get(app, "/api/v1/environment-document/", Some(SERVER_KEY)).await;
            doc["updated_at"] == "2024-06-01T00:00:00Z"
        }
    })
    .await;
    eventually(Duration::from_secs(5), || {
        let fake = fake.clone();
        async move {
            fake.requests()
                .iter()
                .any(|r| r.if_modified_since.as_deref() == Some("Sat, 01 Jun 2024 00:00:00 GMT"))
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn one_failing_environment_does_not_stall_another_and_last_known_good_is_kept() {
    let fake = FakeFlagsmith::start().await;
    fake.set_document(SERVER_KEY, &default_document());
    fake.set_failure("ser.broken", Some(StatusCode::INTERNAL_SERVER_ERROR));
    let environments = format!(
        "[{{serverSideKey: ser.broken, clientSideKey: broken}}, {{serverSideKey: {SERVER_KEY}, clientSideKey: {CLIENT_KEY}}}]"
    );
    let app = TestApp::spawn(&config(&fake.api_url, &environments, ""), &[]).await;
    eventually(Duration::from_secs(5), || {
        let app = &app;
        async move { get(app, "/api/v1/flags/", Some(CLIENT_KEY)).await.0 == 200 }
    })
    .await;
    assert_eq!(
        get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await,
        (200, client_flags())
    );
    // The broken environment is a known key without a document: 401 like the reference.
    assert_eq!(get(&app, "/api/v1/flags/", Some("broken")).await.0, 401);
    let (status, ready) = get(&app, "/readyz", None).await;
    assert_eq!(status, 503);
    assert!(
        ready["reasons"]
            .to_string()
            .contains("flagsmith environment"),
        "{ready}"
    );
    assert!(ready["reasons"].to_string().contains("500"), "{ready}");
    let (status, health) = get(&app, "/proxy/health", None).await;
    assert_eq!(
        (status, health),
        (
            503,
            json!({"status": "error", "reason": "environment document(s) not updated.", "last_successful_update": null})
        )
    );

    // Recovery makes everything ready.
    fake.set_document("ser.broken", &document("2024-05-01T10:20:30Z", json!("b")));
    fake.set_failure("ser.broken", None);
    app.wait_ready().await;
    assert_eq!(get(&app, "/api/v1/flags/", Some("broken")).await.0, 200);

    // Upstream failures later keep the last-known-good document.
    fake.set_failure(SERVER_KEY, Some(StatusCode::BAD_GATEWAY));
    let before = fake.requests().len();
    eventually(Duration::from_secs(5), || {
        let fake = fake.clone();
        async move { fake.requests().len() > before + 2 }
    })
    .await;
    assert_eq!(
        get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await,
        (200, client_flags())
    );
    app.stop().await;
}

#[tokio::test]
async fn health_endpoints_follow_the_reference_and_turn_stale() {
    let fake = FakeFlagsmith::start().await;
    fake.set_document(SERVER_KEY, &default_document());
    let extra = "    environmentUpdateGracePeriodSeconds: 0\n";
    let app = TestApp::spawn(&config(&fake.api_url, &one_environment(), extra), &[]).await;
    app.wait_ready().await;
    for path in [
        "/proxy/health",
        "/proxy/health/",
        "/proxy/health/readiness",
        "/proxy/health/readiness/",
        "/health",
        "/health/",
    ] {
        let (status, body) = get(&app, path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["reason"], Value::Null);
        let ts = body["last_successful_update"].as_str().unwrap();
        assert!(ts.len() >= 19 && ts.as_bytes()[10] == b'T', "{ts}");
    }
    for path in ["/proxy/health/liveness", "/proxy/health/liveness/"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().is_empty());
    }
    let (status, _) = send(app.client.post(app.url("/proxy/health"))).await;
    assert_eq!(status, 405);

    // With polls failing, the document ages past frequency + grace (1 s) and health says so,
    // while flags are still served.
    fake.set_failure(SERVER_KEY, Some(StatusCode::SERVICE_UNAVAILABLE));
    eventually(Duration::from_secs(6), || {
        let app = &app;
        async move { get(app, "/proxy/health", None).await.0 == 503 }
    })
    .await;
    let (_, body) = get(&app, "/proxy/health", None).await;
    assert_eq!(body["reason"], "environment document(s) stale.");
    assert!(body["last_successful_update"].is_string());
    assert_eq!(get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn document_files_are_served_and_reloaded() {
    let environments = format!(
        "[{{serverSideKey: {SERVER_KEY}, clientSideKey: {CLIENT_KEY}, documentFile: env.json}}]"
    );
    // The API URL is unreachable: file mode never calls it.
    let yaml = config("http://127.0.0.1:9/api/v1", &environments, "");
    let app = TestApp::spawn(&yaml, &[("env.json", &default_document())]).await;
    app.wait_ready().await;
    assert_eq!(
        get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await,
        (200, client_flags())
    );
    assert_eq!(get(&app, "/proxy/health", None).await.0, 200);

    // An invalid file keeps the last-known-good document.
    std::fs::write(app.file("env.json"), "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await,
        (200, client_flags())
    );

    // A valid change is picked up. Segment 11 overrides feature_b, so change mv's control.
    let changed = default_document().replace("\"control\"", "\"blue\"");
    std::fs::write(app.file("env.json"), changed).unwrap();
    eventually(Duration::from_secs(5), || {
        let app = &app;
        async move {
            let (_, flags) = get(app, "/api/v1/flags/", Some(CLIENT_KEY)).await;
            flags[2]["feature_state_value"] == "blue"
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn flagsmith_metrics_count_requests_per_endpoint_and_document_syncs() {
    let (_fake, app) = api_app().await;
    assert_eq!(get(&app, "/api/v1/flags/", Some(CLIENT_KEY)).await.0, 200);
    assert_eq!(get(&app, "/api/v1/flags", Some("unknown")).await.0, 401);
    let body = json!({"identifier": "u1", "traits": []});
    assert_eq!(
        post(&app, "/api/v1/identities/", CLIENT_KEY, &body).await.0,
        200
    );
    assert_eq!(
        get(&app, "/api/v1/environment-document/", Some(SERVER_KEY))
            .await
            .0,
        200
    );
    let metrics = app
        .client
        .get(format!("http://{}/metrics", app.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"flagsmith_proxy_request_total{endpoint="flags"}"#,
        r#"flagsmith_proxy_request_error_total{endpoint="flags"}"#,
        r#"flagsmith_proxy_request_total{endpoint="identities"}"#,
        r#"flagsmith_proxy_request_total{endpoint="environment-document"}"#,
        r#"flagsmith_proxy_request_seconds_bucket{endpoint="identities",le="0.001"}"#,
        r#"flagsmith_proxy_document_fetch_total{environment="…",result="updated"}"#,
        r#"flagsmith_proxy_document_store_total{environment="…",result="written"}"#,
        r#"flagsmith_proxy_document_lease_held{environment="…"}"#,
        r#"flagsmith_proxy_document_age_seconds{environment="…"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    app.stop().await;
}
