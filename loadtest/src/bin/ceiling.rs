//! `ceiling`: a bare hyper "200" server — the HTTP ceiling admissions are compared with.
//!
//! hyper 1 on tokio's multi-thread runtime, HTTP/1.1 with keep-alive and the same connection
//! settings as Wardwatch's own server (`crates/runtime/src/http.rs`); every request's body is
//! read to the end, then answered `200` with a tiny JSON body. Nothing else: no routing, no
//! parsing, no state. Runs until killed.

// This binary's output is its listen address on stdout, read by loadtest/bench-state.sh.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "ceiling",
    about = "A bare hyper server answering 200 to everything (the HTTP ceiling)"
)]
struct Args {
    /// Address to listen on (port 0: any free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

const BODY: &[u8] = br#"{"ok":true}"#;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as a real handler must before it can answer.
    let status = match request.into_body().collect().await {
        Ok(_) => 200,
        Err(_) => 400,
    };
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(BODY))));
    Ok(response)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ceiling: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("ceiling listening on http://{addr}"),
        Err(e) => {
            eprintln!("ceiling: no local address: {e}");
            return ExitCode::FAILURE;
        }
    }
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("ceiling: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // As Wardwatch's server does (crates/runtime/src/http.rs): the same socket options on both.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
