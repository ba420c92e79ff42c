//! rust-service: a small HTTP service meant to run under roadie (see README.md).
//!
//! - `DATABASE_URL`: `postgres://...` or `sqlite:path.db`; `PORT`: default 8080, on 0.0.0.0.
//! - `GET /health`: 200 when the database answers `SELECT 1`, else 503.
//! - `GET /customers`: the customers with the count and total of their orders, as JSON.
//! - No migrations: roadie ran them, under its lock, before starting the service.
//! - SIGTERM (or SIGINT): stop accepting, finish the requests in flight, close the pool, exit 0.

mod db;

use std::process::ExitCode;
use std::thread;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nix::sys::signal::{SigSet, Signal};
use serde_json::json;

use db::Db;

/// One line on stderr, in one write(2): stderr is unbuffered, and `eprintln!` writes a line in
/// pieces, between which another process's line (roadie's, on the same pipe) can land.
macro_rules! log {
    ($($arg:tt)*) => {{
        let line = format!("[rust-service] {}\n", format_args!($($arg)*));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }};
}

fn main() -> ExitCode {
    // SIGTERM and SIGINT are blocked in this thread before any other starts (threads inherit
    // the mask), and one thread takes them with sigwait: a stop is a plain message to the
    // server, with no signal handler. (tokio's `signal` feature does the same job.)
    let stop_signals = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT]);
    if let Err(e) = stop_signals.thread_block() {
        log!("error: blocking SIGTERM and SIGINT: {e}");
        return ExitCode::FAILURE;
    }
    let stop = match stop_requested(stop_signals) {
        Ok(stop) => stop,
        Err(e) => {
            log!("error: starting the signal thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread serves: plenty for a small service, and sqlx's SQLite runs its own threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log!("error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, serves until `stop` fires, then drains the connections and closes the pool.
async fn serve(stop: tokio::sync::oneshot::Receiver<Signal>) -> Result<(), String> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "DATABASE_URL is not set (postgres://... or sqlite:path.db)".to_string())?;
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 8080,
    };
    let db = Db::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("listening on 0.0.0.0:{port}: {e}"))?;
    log!(
        "listening on http://0.0.0.0:{port} ({} pool of at most {} connections)",
        db.kind(),
        db::MAX_CONNECTIONS
    );
    let app = Router::new()
        .route("/health", get(health))
        .route("/customers", get(customers))
        .with_state(db.clone());
    // Once `stop` fires, axum stops accepting, closes idle keep-alive connections, lets every
    // request in flight finish, and returns once the last connection is closed.
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            if let Ok(signal) = stop.await {
                log!("{signal} received: shutting down gracefully");
            }
        })
        .await
        .map_err(|e| format!("serving: {e}"))?;
    log!("all requests finished; closing the database pool");
    db.close().await;
    log!("stopped");
    Ok(())
}

/// A thread that waits for a signal in `signals` (blocked in every thread) and sends it on the
/// returned channel; a second one exits at once, for the impatient.
fn stop_requested(signals: SigSet) -> std::io::Result<tokio::sync::oneshot::Receiver<Signal>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(first) = signals.wait() else { return };
            let _ = tx.send(first);
            if let Ok(second) = signals.wait() {
                log!("{second} received again: exiting now");
                std::process::exit(1);
            }
        })?;
    Ok(rx)
}

/// `GET /health`: 200 when the database answers `SELECT 1`, else 503 with the reason.
async fn health(State(db): State<Db>) -> Response {
    match db.ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => unavailable("GET /health", e),
    }
}

/// `GET /customers`: the customers, each with the count and total of their orders.
async fn customers(State(db): State<Db>) -> Response {
    match db.customers().await {
        Ok(customers) => Json(customers).into_response(),
        Err(e) => unavailable("GET /customers", e),
    }
}

/// 503 with the database's error (a missing table, say, when roadie was told not to migrate).
fn unavailable(what: &str, error: sqlx::Error) -> Response {
    log!("{what}: {error}");
    let body = Json(json!({ "error": error.to_string() }));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}
