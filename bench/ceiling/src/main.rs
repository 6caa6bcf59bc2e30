//! The benchmark ceiling: the cheapest axum server that answers every request (any path, GET or
//! POST) with a fixed `application/json` body of the requested size. The proxy's throughput is
//! reported as a ratio of this server's, measured with the same requests on the same machine.
//!
//! Usage: `bench-ceiling <port> <body-bytes> [content-encoding]`

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(3600);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let encoding = args.next();
    // A JSON-looking body: `[` then spaces then `]`, exactly `size` bytes.
    let mut body = vec![b' '; size.max(2)];
    body[0] = b'[';
    body[size.max(2) - 1] = b']';
    let body = Bytes::from(body);
    let encoding = encoding.and_then(|e| HeaderValue::from_str(&e).ok());
    let handler = move |_request: Bytes| {
        let body = body.clone();
        let encoding = encoding.clone();
        async move { respond(body, encoding) }
    };
    let app = Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}

fn respond(body: Bytes, encoding: Option<HeaderValue>) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, encoding);
    }
    response
}
