//! The login path of the campaign story: an HTTP service whose
//! `GET /login?user=...&campaign=...` answers "is this user in the campaign"
//! with `CAMPAIGN.HAS`, from Redis only: the hot path never touches
//! PostgreSQL (a campaign missing from Redis is loaded by the module itself,
//! read-through). `POST /enroll?user=...&campaign=...` adds a member with
//! `CAMPAIGN.ADD` (written behind to PostgreSQL by the module).
//!
//! Settings come from the environment:
//!   REDIS_URL  default redis://127.0.0.1:6379/
//!   LISTEN     default 127.0.0.1:8080
//!
//! Replies are JSON: `{"member":true}`, `{"added":1}`, or `{"error":"..."}`
//! with 400 (bad input, refused by the module) or 503 (Redis unreachable).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use redis::aio::ConnectionManager;

// redis-rs: CAMPAIGN.ADD and CAMPAIGN.HAS through the generic command call.
// (README "Client libraries" shows this block; examples/run-all.sh checks it.)
/// Adds `user` to `campaign`; returns 1 if it was new, 0 if already there.
async fn campaign_add<C>(con: &mut C, campaign: &str, user: &str) -> redis::RedisResult<i64>
where
    C: redis::aio::ConnectionLike + Send,
{
    redis::cmd("CAMPAIGN.ADD")
        .arg(campaign)
        .arg(user)
        .query_async(con)
        .await
}

/// Is `user` in `campaign`? (CAMPAIGN.HAS replies 1 or 0.)
async fn campaign_has<C>(con: &mut C, campaign: &str, user: &str) -> redis::RedisResult<bool>
where
    C: redis::aio::ConnectionLike + Send,
{
    redis::cmd("CAMPAIGN.HAS")
        .arg(campaign)
        .arg(user)
        .query_async(con)
        .await
}
// end of the redis-rs snippet

type Params = Query<HashMap<String, String>>;

async fn login(State(redis): State<ConnectionManager>, Query(params): Params) -> Response {
    let Some((campaign, user)) = campaign_and_user(&params) else {
        return json_error(StatusCode::BAD_REQUEST, "user and campaign are required");
    };
    // A ConnectionManager clone shares one multiplexed connection (and
    // reconnects it when it breaks).
    let mut con = redis.clone();
    match campaign_has(&mut con, campaign, user).await {
        Ok(member) => json(StatusCode::OK, format!("{{\"member\":{member}}}")),
        Err(error) => redis_error(&error),
    }
}

async fn enroll(State(redis): State<ConnectionManager>, Query(params): Params) -> Response {
    let Some((campaign, user)) = campaign_and_user(&params) else {
        return json_error(StatusCode::BAD_REQUEST, "user and campaign are required");
    };
    let mut con = redis.clone();
    match campaign_add(&mut con, campaign, user).await {
        Ok(added) => json(StatusCode::OK, format!("{{\"added\":{added}}}")),
        Err(error) => redis_error(&error),
    }
}

fn campaign_and_user(params: &HashMap<String, String>) -> Option<(&str, &str)> {
    let campaign = params.get("campaign").filter(|s| !s.is_empty())?;
    let user = params.get("user").filter(|s| !s.is_empty())?;
    Some((campaign, user))
}

/// An error reply from the server (a member the module refuses, WRONGTYPE)
/// is the caller's fault: 400. Anything else (connection refused, timeout)
/// means Redis cannot answer now: 503, and the login flow decides.
fn redis_error(error: &redis::RedisError) -> Response {
    if error.code().is_some() {
        json_error(StatusCode::BAD_REQUEST, &error.to_string())
    } else {
        eprintln!("login-service: redis: {error}");
        json_error(StatusCode::SERVICE_UNAVAILABLE, "redis unavailable")
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let mut escaped = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c if (c as u32) < 0x20 => escaped.push_str(&format!("\\u{:04x}", c as u32)),
            c => escaped.push(c),
        }
    }
    json(status, format!("{{\"error\":\"{escaped}\"}}"))
}

fn main() {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let client = redis::Client::open(redis_url.as_str()).expect("REDIS_URL is not a Redis URL");
        // A login must not hang on a stuck Redis: give every call a deadline.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let redis = ConnectionManager::new_with_config(client, config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {redis_url}: {e}"));

        let app = Router::new()
            .route("/login", get(login))
            .route("/enroll", post(enroll))
            .with_state(redis);
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {listen}: {e}"));
        println!("login-service: listening on http://{listen}");
        axum::serve(listener, app).await.expect("server");
    });
}
