//! The SDK proxy-mode endpoints for cohorts (spec §2.4-2.5):
//! - `GET /sdk/v1/cohort/{cohortId}`: the stored cohort in the cohort API's shape, so an SDK
//!   can use the proxy as its `cohortServerUrl` (Basic `apiKey:secretKey` of a configured
//!   project; gzip only when the client accepts it, unlike the reference);
//! - `GET /sdk/v2/memberships/{groupType}/{groupName}`: the cohort ids an entity belongs to.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::amplitude::json_by_encoding;
use super::error::ApiError;
use super::request::{self, Query};
use super::AppState;
use crate::amplitude::registry::Lookup;

/// `GET /sdk/v1/cohort/{cohortId}`; checks in the reference's order: 401, 404, 413, 204, 200.
pub async fn get_cohort(
    State(state): State<AppState>,
    Path(cohort_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let authorised = basic_credentials(&headers)
        .is_some_and(|(api, secret)| state.cohorts.authenticate(&api, &secret));
    if !authorised {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid api or secret key",
        ));
    }
    let query = Query::parse(query.as_deref());
    // Unparsable values count as absent, like the reference.
    let last_modified: Option<i64> = query.first("lastModified").and_then(|v| v.parse().ok());
    let max_cohort_size: Option<i64> = query.first("maxCohortSize").and_then(|v| v.parse().ok());
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "Cohort not found");
    if cohort_id.is_empty() {
        return Err(not_found());
    }
    let stored = state
        .cohorts
        .store()
        .get_cohort_blob(&cohort_id)
        .await
        .map_err(store_unavailable)?
        .ok_or_else(not_found)?;
    let description = &stored.description;
    let max = max_cohort_size.unwrap_or(i64::from(i32::MAX));
    if i64::try_from(description.size).unwrap_or(i64::MAX) > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Cohort {cohort_id} sized {} is greater than max cohort size {max}",
                description.size
            ),
        ));
    }
    if last_modified == Some(description.last_modified) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if stored.blob.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Cohort members not found",
        ));
    }
    let blob = stored.blob;
    Ok(json_by_encoding(&headers, Body::from(blob.clone()), || {
        gunzip_body(blob)
    }))
}

/// `GET /sdk/v2/memberships/{groupType}/{groupName}` (deployment key): a JSON array of the
/// ids of the stored cohorts of that group type containing that name.
pub async fn get_memberships(
    State(state): State<AppState>,
    Path((group_type, group_name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = request::deployment_key(&headers).ok_or_else(ApiError::invalid_deployment)?;
    if matches!(state.registry.lookup(key), Lookup::Unknown) {
        return Err(ApiError::invalid_deployment());
    }
    if group_type.is_empty() {
        return Err(ApiError::bad_request("Invalid group type"));
    }
    if group_name.is_empty() {
        return Err(ApiError::bad_request("Invalid group name"));
    }
    let ids = state
        .cohorts
        .store()
        .get_memberships(&group_type, &group_name)
        .await
        .map_err(store_unavailable)?;
    let body = serde_json::to_vec(&ids).unwrap_or_else(|_| b"[]".to_vec());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The `(apiKey, secretKey)` of a `Basic` authorization header; anything after a second `:`
/// is part of the secret here (the reference drops it, which would accept a wrong secret).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (api, secret) = text.split_once(':')?;
    Some((api.to_owned(), secret.to_owned()))
}

/// The blob is stored gzipped; clients that do not accept gzip get plain JSON, decompressed
/// chunk by chunk while it is sent, so a large cohort is never held uncompressed.
fn gunzip_body(blob: Bytes) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut decoder = flate2::read::GzDecoder::new(&blob[..]);
        loop {
            let mut chunk = vec![0u8; 64 * 1024];
            let item = match decoder.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    Ok(Bytes::from(chunk))
                }
                Err(error) => {
                    tracing::error!(%error, "stored cohort blob is not valid gzip");
                    Err(error)
                }
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn store_unavailable(error: crate::store::StoreError) -> ApiError {
    tracing::error!(%error, "cohort store read failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "cohort storage unavailable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_parsed_strictly() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("api:sec:ret");
        assert_eq!(
            basic_credentials(&with_auth(&format!("basic {encoded}"))),
            Some(("api".into(), "sec:ret".into()))
        );
        assert_eq!(basic_credentials(&with_auth("Basic !!!")), None);
        assert_eq!(basic_credentials(&with_auth("Api-Key x")), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("api");
        assert_eq!(
            basic_credentials(&with_auth(&format!("Basic {no_colon}"))),
            None
        );
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }
}
