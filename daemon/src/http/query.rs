//! `POST /query` and `GET /catalog`: SQL on the live warehouse for scripts and agents,
//! through the same gate, limits and metrics as the Postgres endpoint
//! ([`sluice_sql::http`]).
//!
//! Who may ask: with `[sql.users]`, only requests with HTTP Basic credentials of one of
//! them (401 otherwise); without users, only when the HTTP listener is on loopback (403
//! otherwise: the warehouse is not for whoever reaches the port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine;
use duckdb::types::Value;
use futures::StreamExt;
use serde_json::json;
use sluice_sql::http::Output;
use sluice_sql::metrics::AuthFailure;
use sluice_sql::{Refusal, Service};

use super::HttpState;

/// `POST /query`: the body is the SQL, or JSON `{"sql": "...", "params": [...]}`
/// (`$1`, `$2`... bound in order); `Accept` chooses JSON (default), `text/csv` or
/// `application/vnd.apache.arrow.stream`.
pub async fn query(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let service = match allowed(&state, &headers, peer).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let body = match read_body(&headers, body, state.max_body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let Some(output) = Output::from_accept(accept) else {
        return problem(
            StatusCode::NOT_ACCEPTABLE,
            "22023",
            "Accept names no type sluice writes: application/json, text/csv or \
             application/vnd.apache.arrow.stream",
        );
    };
    let (sql, params) = match request(&headers, &body) {
        Ok(r) => r,
        Err(message) => return problem(StatusCode::BAD_REQUEST, "22023", &message),
    };
    match sluice_sql::http::query(&service, &sql, params, output).await {
        Ok(answer) => {
            let body = answer
                .body
                .map(|chunk| chunk.map_err(std::io::Error::other));
            (
                [(header::CONTENT_TYPE, output.content_type())],
                Body::from_stream(body),
            )
                .into_response()
        }
        Err(e) => refused(&e),
    }
}

/// `GET /catalog`: schemas, tables, columns, row counts, models' watermarks.
pub async fn catalog(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let service = match allowed(&state, &headers, peer).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sluice_sql::http::catalog(&service).await {
        Ok(catalog) => Json(catalog).into_response(),
        Err(e) => refused(&e),
    }
}

/// Time a request's body has to arrive once its headers have.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The request's body: at most `max` bytes (413 beyond, at once when its length says so),
/// within [`BODY_TIMEOUT`] (408).
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, Box<Response>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Box::new(too_large(max)));
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Box::new(too_large(max))),
        Err(_) => Err(Box::new(problem(
            StatusCode::REQUEST_TIMEOUT,
            "08P01",
            &format!(
                "the request body did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            ),
        ))),
    }
}

fn too_large(max: usize) -> Response {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "54000",
        &format!(
            "the request body is longer than {max} bytes (sql.max_query_size and room for JSON)"
        ),
    )
}

/// The SQL service, if this request may use it. Wrong credentials are counted, logged
/// (rate-limited) and answered after the same delay as a failed Postgres login.
async fn allowed(
    state: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Arc<Service>, Box<Response>> {
    let Some(service) = state.sql.get().cloned() else {
        return Err(Box::new(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "57P03",
            "the warehouse is not open yet (sluice is starting; see /readyz)",
        )));
    };
    match &service.users {
        Some(users) => {
            let credentials = basic_credentials(headers);
            let ok = credentials
                .as_ref()
                .is_some_and(|(u, p)| users.verify(u, p));
            if !ok {
                let (user, reason) = match &credentials {
                    Some((u, _)) if users.knows(u) => (u.as_str(), AuthFailure::WrongPassword),
                    Some((u, _)) => (u.as_str(), AuthFailure::UnknownUser),
                    None => ("", AuthFailure::Protocol),
                };
                service
                    .metrics
                    .auth_failed("http", reason, user, &peer.to_string());
                tokio::time::sleep(sluice_sql::pg::LOGIN_FAILURE_DELAY).await;
                let mut r = problem(
                    StatusCode::UNAUTHORIZED,
                    "28P01",
                    "HTTP Basic credentials of a user in [sql.users] are required",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"sluice\""),
                );
                return Err(Box::new(r));
            }
        }
        None if !state.loopback => {
            return Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "28000",
                "SQL over HTTP on a non-loopback http.listen needs users with passwords \
                 ([sql.users])",
            )))
        }
        None => {}
    }
    Ok(service)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The query text and its parameters.
fn request(headers: &HeaderMap, body: &Bytes) -> Result<(String, Vec<Value>), String> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json {
        let sql = std::str::from_utf8(body).map_err(|_| "the query is not UTF-8".to_string())?;
        return Ok((sql.to_string(), Vec::new()));
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        sql: String,
        #[serde(default)]
        params: Vec<serde_json::Value>,
    }
    let r: Request = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not {{\"sql\": \"...\", \"params\": [...]}}: {e}"))?;
    Ok((r.sql, r.params.into_iter().map(param).collect()))
}

fn param(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::BigInt(i),
            (_, Some(u), _) => Value::UBigInt(u),
            (_, _, Some(f)) => Value::Double(f),
            _ => Value::Text(n.to_string()),
        },
        serde_json::Value::String(s) => Value::Text(s),
        other => Value::Text(other.to_string()),
    }
}

/// A refusal or failure as an HTTP status and `{"error": {"sqlstate", "message"}}`.
fn refused(e: &Refusal) -> Response {
    let status = match e.sqlstate {
        "53300" => StatusCode::SERVICE_UNAVAILABLE,
        "57014" => StatusCode::REQUEST_TIMEOUT,
        s if s.starts_with("XX") => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    problem(status, e.sqlstate, &e.message)
}

fn problem(status: StatusCode, sqlstate: &str, message: &str) -> Response {
    let body = json!({"error": {"sqlstate": sqlstate, "message": message}});
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        let mut headers = HeaderMap::new();
        // "analyst:pa:ss" (a colon in the password stays in it).
        headers.insert(
            header::AUTHORIZATION,
            "Basic YW5hbHlzdDpwYTpzcw==".parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("analyst".into(), "pa:ss".into()))
        );
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn json_parameters_become_duckdb_values() {
        assert_eq!(param(json!(7)), Value::BigInt(7));
        assert_eq!(param(json!(1.5)), Value::Double(1.5));
        assert_eq!(param(json!("x")), Value::Text("x".into()));
        assert_eq!(param(json!(null)), Value::Null);
        assert_eq!(param(json!(true)), Value::Boolean(true));
    }
}
