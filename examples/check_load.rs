//! A gRPC load client for scopegate without Envoy: `STREAMS` concurrent callers (over
//! `CONNECTIONS` HTTP/2 connections) send the same Check for `SECONDS` and the Check rate is
//! printed. `scripts/load` runs it to measure scopegate's own cost per Check (the "direct
//! floor"), reading scopegate's CPU time from /proc around the run.
//!
//! Usage: cargo run --release --example check_load -- ADDR PATH SECONDS [STREAMS] [CONNECTIONS] [TOKEN]
//! (ADDR is IP:PORT or unix:PATH)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: check_load ADDR PATH SECONDS [STREAMS] [CONNECTIONS] [TOKEN]";
    let addr = args.first().ok_or(usage)?.clone();
    let path = args.get(1).ok_or(usage)?.clone();
    let seconds: u64 = args.get(2).ok_or(usage)?.parse()?;
    let streams: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let connections: usize = args.get(4).map_or(Ok(4), |s| s.parse())?;
    let token = args.get(5).cloned();

    let headers: HashMap<String, String> = token
        .map(|t| ("authorization".to_string(), format!("Bearer {t}")))
        .into_iter()
        .collect();
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path,
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = match addr.strip_prefix("unix:") {
            Some(socket) => {
                scopegate::tools::probe::unix_channel(socket.into(), Duration::from_secs(5)).await?
            }
            None => {
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?
            }
        };
        channels.push(channel);
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let mut client = AuthorizationClient::new(channels[i % connections].clone());
        let (request, done, failed) = (request.clone(), Arc::clone(&done), Arc::clone(&failed));
        tasks.spawn(async move {
            while Instant::now() < deadline {
                match client.check(request.clone()).await {
                    Ok(answer)
                        if answer
                            .get_ref()
                            .status
                            .as_ref()
                            .is_some_and(|s| s.code == 0) =>
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "checks {done} failed {failed} seconds {elapsed:.2} rate {:.0}",
        done as f64 / elapsed
    );
    if failed > 0 {
        return Err(format!("{failed} Checks were not allowed").into());
    }
    Ok(())
}
