//! The OpenAPI document and the routes that serve requests are one table: every
//! documented operation, called by the deployment admin (with placeholder names), is
//! routed to a handler — it may answer 400 or 404 for the placeholder, never "no
//! operation" — and paths outside the table answer 404 "no operation". (The reverse, a
//! routed operation missing from the table, is not checked: axum cannot list a router's
//! routes, and the AKV router parses its own paths for their quirks.)

use atrest_server::ServeConfig;
use reqwest::Method;
use serde_json::Value;
mod common;
use common::{client_for, temp_dir};

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = temp_dir("atrest-routes");
    let cfg = ServeConfig { data_dir: dir.0.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let client = client_for(server.ca_pem.as_ref().unwrap());
    let token = std::fs::read_to_string(&server.admin_token).unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let doc: Value = client.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    let call = |method: Method, path: String| {
        let (client, token, base) = (client.clone(), token.clone(), base.clone());
        async move {
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = client
                .request(method, format!("{base}{path}{sep}api-version=7.5"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let unrouted = |text: &str| text.contains("no operation") || text.contains("no admin operation");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        // Placeholders get names nothing has, so no handler changes anything.
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "routecheck" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ops.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, text) = call(m.clone(), concrete.clone()).await;
            assert!(!unrouted(&text), "{method} {path} is documented but not routed: {status} {text}");
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} operations documented");
    for (m, path) in [
        (Method::GET, "/keys/a/b/c/d"),
        (Method::GET, "/secrets/a/b/c"),
        (Method::POST, "/deletedsecrets/a/purge"),
        (Method::POST, "/admin/nothing"),
        (Method::GET, "/data/nothing"),
        (Method::PATCH, "/data/resources/routecheck"),
        (Method::GET, "/data/resources/routecheck/records/"),
    ] {
        let (status, text) = call(m.clone(), path.into()).await;
        assert!(unrouted(&text) && status == reqwest::StatusCode::NOT_FOUND, "{m} {path}: {status} {text}");
    }
    // A path parameter that is not percent-encoded UTF-8 is refused in the API's format.
    let (status, text) = call(Method::GET, "/data/resources/routecheck/records/%FF".into()).await;
    assert!(status == reqwest::StatusCode::BAD_REQUEST && text.contains("BadParameter"), "{status} {text}");
    server.shutdown().await;
}

/// Authentication is a layer in front of every front end: a request without a valid
/// token is answered (401, with the AKV challenge on a vault origin) while its body is
/// still on the way, never after waiting for or parsing it.
#[tokio::test]
async fn unauthenticated_requests_are_answered_before_the_body() {
    let dir = temp_dir("atrest-routes-auth");
    let cfg = ServeConfig { data_dir: dir.0.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let client = client_for(server.ca_pem.as_ref().unwrap());
    let base = format!("https://localhost:{}", server.addr.port());
    for (path, akv) in [
        ("/keys/k/create?api-version=7.5", true),
        ("/secrets/restore?api-version=7.5", true),
        ("/admin/tenants", false),
        ("/data/resources/r/records/x", false),
    ] {
        // A body that never arrives.
        let body = reqwest::Body::wrap_stream(futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>());
        let sent = client.post(format!("{base}{path}")).header("content-length", "1000").body(body).send();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), sent)
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer while the body was pending"))
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED, "{path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert_eq!(challenge.contains("authorization=\"https://login.atrest.invalid/"), akv, "{path}: {challenge}");
    }
    server.shutdown().await;
}
