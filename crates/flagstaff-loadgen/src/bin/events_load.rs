//! `flagstaff-events-load`: sends analytics events to a Flagstaff server at a fixed rate and
//! measures what the events pipeline issue asks about (`ld-protocol.md` §6):
//!
//! - how many events per second are accepted and then written (the server's
//!   `/api/v1/events/health`, read before and after), and how many were dropped;
//! - the acknowledgement latency of each `POST /bulk` (p50/p99/max), from the moment the
//!   request is sent to its `202`;
//! - the management API's latency (`GET /api/v1/projects/default/flags`, every 20 ms) first
//!   without load, then during it.
//!
//! Two payload shapes: `--mode raw` sends payloads of `--events-per-payload` custom and feature
//! events, each with its own inline context (what sampling and contexts-seen process); `--mode
//! summary` sends one summary event per payload with `--flags` flags × 2 variations counters
//! (what every server-side SDK sends every 5 seconds).
//!
//! Open loop: each connection sends on a fixed schedule whatever the answers take, so a slow
//! server shows as latency, not as a lower offered rate. Bounded: 127.0.0.1 only, at most
//! `--seconds` of load. See `scripts/bench-events`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Custom and feature events with inline contexts.
    Raw,
    /// One summary event with many counters per payload.
    Summary,
}

#[derive(Debug, Parser)]
struct Args {
    /// The server, `127.0.0.1:port` (only loopback addresses are accepted).
    #[arg(long)]
    address: String,
    /// The environment's SDK key.
    #[arg(long)]
    sdk_key: String,
    /// An API token that may read the project's flags and the events health.
    #[arg(long)]
    api_token: String,
    /// Payload shape.
    #[arg(long, value_enum, default_value_t = Mode::Raw)]
    mode: Mode,
    /// Payloads per second, in all.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Events per payload (raw mode).
    #[arg(long, default_value_t = 100)]
    events_per_payload: usize,
    /// Flags per summary (summary mode); each has two counters.
    #[arg(long, default_value_t = 200)]
    flags: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: u64,
    /// Seconds of load (and of the baseline before it).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Raw mode: feature events say `inExperiment` (served variation 0 or 1), as SDKs send them
    /// for flags with a running experiment, so that experiments' exposures flow too; each
    /// purchase is then by the context of the feature event that follows it.
    #[arg(long)]
    in_experiment: bool,
    /// The server's process ID, to report its CPU time during the load.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// A process's CPU time so far (user + system), from `/proc/<pid>/stat` (`self` for this
/// one); zero where that cannot be read. The load tool shares the machine's cores with the
/// server, so what it spends is part of where the time goes.
fn cpu_of(process: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{process}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn describe(name: &str, latencies: &mut [Duration]) {
    latencies.sort();
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        latencies.len(),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        percentile(latencies, 1.0)
    );
}

fn payload(args: &Args, seed: usize) -> (String, u64, u64) {
    // Now: an experiment counts only events from its start on.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1_700_000_000_000, |d| d.as_millis() as u64);
    match args.mode {
        Mode::Raw => {
            let events: Vec<Value> = (0..args.events_per_payload)
                .map(|i| {
                    // With experiments, each purchase (even i) is by the context of the feature
                    // event after it, so some purchases are by exposed contexts.
                    let k = if args.in_experiment { i - i % 2 } else { i };
                    let context = json!({"kind": "user", "key": format!("user-{}", (seed * 7919 + k) % 50_000),
                        "country": "DE", "plan": "gold", "email": "private@example.com",
                        "_meta": {"privateAttributes": ["email"]}});
                    if i % 2 == 0 {
                        json!({"kind": "custom", "creationDate": now, "key": "purchase",
                            "metricValue": 9.5, "context": context})
                    } else if args.in_experiment {
                        let variation = (seed + i) % 2;
                        json!({"kind": "feature", "creationDate": now, "key": format!("flag-{}", i % 20),
                            "version": 3, "variation": variation, "value": variation == 1, "default": false,
                            "reason": {"kind": "FALLTHROUGH", "inExperiment": true}, "context": context})
                    } else {
                        json!({"kind": "feature", "creationDate": now, "key": format!("flag-{}", i % 20),
                            "version": 3, "variation": 1, "value": true, "default": false,
                            "reason": {"kind": "FALLTHROUGH"}, "context": context})
                    }
                })
                .collect();
            (
                Value::Array(events).to_string(),
                args.events_per_payload as u64,
                0,
            )
        }
        Mode::Summary => {
            let features: serde_json::Map<String, Value> = (0..args.flags)
                .map(|f| {
                    (
                        format!("flag-{f}"),
                        json!({"default": false, "contextKinds": ["user"], "counters": [
                            {"variation": 0, "version": 4, "value": true, "count": 3},
                            {"variation": 1, "version": 4, "value": false, "count": 2}]}),
                    )
                })
                .collect();
            let summary = json!([{"kind": "summary", "startDate": now, "endDate": now + 5000,
                "features": features}]);
            (summary.to_string(), 1, 2 * args.flags as u64)
        }
    }
}

async fn health(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("{base}/api/v1/events/health"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Reads the flag list every 20 ms until `until`, returning each request's latency.
async fn probe_api(
    client: reqwest::Client,
    base: String,
    token: String,
    until: Instant,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let ok = client
            .get(format!("{base}/api/v1/projects/default/flags"))
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            latencies.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.address.starts_with("127.0.0.1:") {
        bail!("only 127.0.0.1 targets are allowed");
    }
    let base = format!("http://{}", args.address);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections as usize * 2)
        .build()?;

    println!(
        "baseline: management API alone for {} s",
        args.seconds.min(5)
    );
    let mut baseline = probe_api(
        client.clone(),
        base.clone(),
        args.api_token.clone(),
        Instant::now() + Duration::from_secs(args.seconds.min(5)),
    )
    .await;
    describe("management API without load", &mut baseline);

    let before = health(&client, &base, &args.api_token)
        .await
        .context("read /api/v1/events/health")?;
    let payloads: Arc<Vec<String>> = Arc::new(
        (0..64)
            .map(|seed| payload(&args, seed).0)
            .collect::<Vec<_>>(),
    );
    let (_, events_per_payload, counters_per_payload) = payload(&args, 0);
    let server = args
        .server_pid
        .map_or_else(String::new, |pid| pid.to_string());
    let cpu_before = (cpu_of("self"), cpu_of(&server));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let per_connection = Duration::from_secs_f64(args.connections as f64 / args.rate as f64);
    let mut senders = Vec::new();
    for c in 0..args.connections {
        let client = client.clone();
        let payloads = Arc::clone(&payloads);
        let url = format!("{base}/bulk");
        let key = args.sdk_key.clone();
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            // Connections start spread over one interval.
            let mut next = started + per_connection.mul_f64(c as f64 / 16.0);
            let mut i = c as usize;
            while next < until {
                tokio::time::sleep_until(next.into()).await;
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("Authorization", &key)
                    .header("Content-Type", "application/json")
                    .header("X-LaunchDarkly-Event-Schema", "4")
                    .header("User-Agent", "LoadClient/1.0")
                    .body(payloads[i % payloads.len()].clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 202 => latencies.push(sent.elapsed()),
                    _ => failures += 1,
                }
                i += args.connections as usize;
                next += per_connection;
            }
            (latencies, failures)
        }));
    }
    let probe = tokio::spawn(probe_api(
        client.clone(),
        base.clone(),
        args.api_token.clone(),
        until,
    ));
    let mut acks = Vec::new();
    let mut failures = 0;
    for sender in senders {
        let (latencies, failed) = sender.await?;
        acks.extend(latencies);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let load_cpu = cpu_of("self").saturating_sub(cpu_before.0);
    let server_cpu = cpu_of(&server).saturating_sub(cpu_before.1);
    let mut under_load = probe.await?;
    let sent_payloads = acks.len() as u64;
    println!(
        "offered: {} payloads/s for {} s ({:?} mode, {} events and {} counters per payload, {} connections)",
        args.rate,
        args.seconds,
        args.mode,
        events_per_payload,
        counters_per_payload,
        args.connections
    );
    describe("ack (POST /bulk → 202)", &mut acks);
    describe("management API under load", &mut under_load);
    println!("failed requests: {failures}");
    for (who, cpu) in [("load tool", load_cpu), ("server", server_cpu)] {
        if !cpu.is_zero() {
            println!(
                "{who} CPU during the load: {} ms ({:.2} cores)",
                cpu.as_millis(),
                cpu.as_secs_f64() / elapsed
            );
        }
    }
    // Wait for the writer to catch up, then report what was accepted, dropped and written.
    let mut after = health(&client, &base, &args.api_token).await?;
    let drain_started = Instant::now();
    while after["queueDepth"].as_u64().unwrap_or(0) > 0
        && drain_started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = health(&client, &base, &args.api_token).await?;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    after = health(&client, &base, &args.api_token).await?;
    let delta =
        |field: &str| after[field].as_u64().unwrap_or(0) - before[field].as_u64().unwrap_or(0);
    let accepted = delta("acceptedEvents");
    let dropped = delta("droppedEvents");
    let written = delta("writtenEvents");
    println!(
        "acknowledged: {sent_payloads} payloads = {} events/s, {} counters/s",
        (sent_payloads * events_per_payload) as f64 / elapsed,
        (sent_payloads * counters_per_payload) as f64 / elapsed
    );
    println!(
        "server: accepted {accepted} events, dropped {dropped}, written {written} ({:.0} events/s accepted over the load)",
        accepted as f64 / elapsed
    );
    println!(
        "last write took {} ms",
        after["lastWriteMillis"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}
