//! `flagstaff-loadgen streams`: opens N `/all` streams (or, with `--fdv2`, N FDv2 `/sdk/stream`
//! streams; with `--client-side-id`, N browser streams `/eval/{id}/{context}`, each for its own
//! context, or with both, N client-side FDv2 streams `/sdk/stream/eval/{context}?auth={id}`)
//! against a Flagstaff server, then makes
//! changes through the management API and records, for every stream, when each change arrived.
//! Prints propagation latency (p50/p99/max, from the moment the API request is sent to the
//! moment a stream has read the `patch`) and the server's memory per idle stream (from its
//! `/proc/<pid>/status`, when `--server-pid` is given).
//!
//! Bounded by design: it talks only to 127.0.0.1, opens at most `--streams` connections, makes
//! `--changes` changes and gives up after `--timeout-seconds`. See `scripts/bench-streams`.
//!
//! More streams than one process may hold (the machine's 20,000 open files per process) are
//! measured with several processes: followers (`--follow-only`) open their streams, say so in
//! `--ready-file` and wait for the changes another process makes; every process writes its
//! wall-clock times to `--times-out` (`{"sent": [...], "arrivals": [[...], ...]}`, Unix
//! nanoseconds), which `scripts/bench-relays` combines. See `scripts/bench-relays`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

#[derive(Debug, Parser)]
struct Args {
    /// The server, `127.0.0.1:port` (only loopback addresses are accepted).
    #[arg(long)]
    address: String,
    /// The environment's SDK key.
    #[arg(long)]
    sdk_key: String,
    /// An API token that may change the flag's targeting.
    #[arg(long)]
    api_token: String,
    /// Where changes are made, when streams connect elsewhere (a relay): the server's
    /// `127.0.0.1:port`. Defaults to `--address`.
    #[arg(long)]
    api_address: Option<String>,
    /// Targeting path of the flag to toggle, under /api/v1.
    #[arg(
        long,
        default_value = "/projects/default/environments/production/flags/load"
    )]
    targeting: String,
    /// Streams to open.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Changes to make once every stream is open.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Pause between changes.
    #[arg(long, default_value_t = 250)]
    pause_ms: u64,
    /// The server's process id, to read its memory before and after opening the streams.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Open browser streams (`/eval/{id}/{context}`, one context per stream) with this
    /// client-side ID instead of `/all` streams.
    #[arg(long)]
    client_side_id: Option<String>,
    /// Open FDv2 streams (`/sdk/stream`, or with `--client-side-id` client-side FDv2's
    /// `/sdk/stream/eval`) instead: a change has arrived when its `payload-transferred` has.
    #[arg(long)]
    fdv2: bool,
    /// Give up after this long.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// Open the streams and wait for `--changes` changes made by another process (no API
    /// calls; `--api-token` is not used).
    #[arg(long)]
    follow_only: bool,
    /// A file written once every stream is open (for the process that makes the changes).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
    /// Writes when each change was sent and when each stream received it, as Unix nanoseconds.
    #[arg(long)]
    times_out: Option<std::path::PathBuf>,
}

/// Converts `Instant`s to Unix nanoseconds, so that several processes' times compare.
struct WallClock {
    instant: Instant,
    unix_nanos: u128,
}

impl WallClock {
    fn now() -> WallClock {
        WallClock {
            instant: Instant::now(),
            unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        }
    }

    fn unix_nanos(&self, at: Instant) -> u128 {
        self.unix_nanos + at.saturating_duration_since(self.instant).as_nanos()
    }
}

/// Resident memory of a process in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time a process has used, in seconds (user + system, from `/proc/<pid>/stat`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Counts `needle` in `data`, given the last bytes of the previous read (`carry`).
fn count_occurrences(carry: &mut Vec<u8>, data: &[u8], needle: &[u8]) -> usize {
    let mut joined = std::mem::take(carry);
    joined.extend_from_slice(data);
    let count = joined
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count();
    let keep = needle.len() - 1;
    *carry = joined[joined.len().saturating_sub(keep)..].to_vec();
    count
}

/// One stream: connects, reads the `put`, reports ready, then timestamps every `patch`.
/// Returns the connection with the times, still open: a stream closed as soon as it has every
/// change would make the server handle thousands of closes while the last change is still
/// going out to the other streams, and the last change would measure that.
async fn stream(
    address: String,
    request: String,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    permit: tokio::sync::OwnedSemaphorePermit,
    expected: usize,
    fdv2: bool,
) -> anyhow::Result<(Vec<Instant>, TcpStream)> {
    // What ends the opening and each change: a `put` and a `patch` on FDv1 streams (browser
    // streams too), a `payload-transferred` on FDv2 streams.
    let (opened, changed): (&[u8], &[u8]) = if fdv2 {
        (b"event: payload-transferred", b"event: payload-transferred")
    } else {
        (b"event: put", b"event: patch")
    };
    let mut permit = Some(permit);
    let mut socket = TcpStream::connect(&address).await?;
    socket.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    let mut carry = Vec::new();
    let mut seen_put = false;
    let mut arrivals = Vec::with_capacity(expected);
    while arrivals.len() < expected {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            bail!("the server closed a stream");
        }
        let now = Instant::now();
        let data = &buf[..n];
        if !seen_put {
            // Found across reads too: the put may arrive in several pieces.
            if count_occurrences(&mut carry, data, opened) > 0 {
                carry.clear();
                seen_put = true;
                permit.take();
                let _ = ready.send(Ok(()));
            }
            continue;
        }
        for _ in 0..count_occurrences(&mut carry, data, changed) {
            arrivals.push(now);
        }
    }
    Ok((arrivals, socket))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.address.starts_with("127.0.0.1:") {
        bail!("the load tool only talks to 127.0.0.1");
    }
    let deadline = Duration::from_secs(args.timeout_seconds);
    let before = args.server_pid.and_then(rss_kib);

    // Open the streams, a few hundred connection attempts at a time.
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let gate = std::sync::Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let permit = std::sync::Arc::clone(&gate).acquire_owned().await?;
        let address = &args.address;
        let request = match &args.client_side_id {
            // A browser's request: no credential header, the context in the path.
            Some(id) => {
                let country = ["NZ", "CA", "FR"][i % 3];
                let context =
                    json!({"kind": "user", "key": format!("user-{i}"), "country": country});
                let encoded =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.to_string());
                let path = if args.fdv2 {
                    format!("/sdk/stream/eval/{encoded}?auth={id}")
                } else {
                    format!("/eval/{id}/{encoded}")
                };
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
                )
            }
            None => format!(
                "GET {} HTTP/1.1\r\nHost: {address}\r\nAuthorization: {}\r\nAccept: text/event-stream\r\n\r\n",
                if args.fdv2 { "/sdk/stream" } else { "/all" },
                args.sdk_key
            ),
        };
        let ready = ready_tx.clone();
        let opened = stream(
            args.address.clone(),
            request,
            ready_tx.clone(),
            permit,
            args.changes,
            args.fdv2,
        );
        tasks.push(tokio::spawn(async move {
            let result = opened.await;
            // A stream that fails says why at once, rather than at the end of the timeout.
            if let Err(e) = &result {
                let _ = ready.send(Err(format!("{e:#}")));
            }
            result
        }));
    }
    drop(ready_tx);
    let opening = Instant::now();
    let mut open = 0;
    while open < args.streams {
        match tokio::time::timeout(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => open += 1,
            Ok(Some(Err(e))) => bail!("a stream failed after {open} opened: {e}"),
            _ => bail!("only {open} of {} streams opened", args.streams),
        }
    }
    let opened_in = opening.elapsed();
    if let Some(path) = &args.ready_file {
        std::fs::write(path, "ready\n").context("the ready file")?;
    }
    let clock = WallClock::now();
    if args.follow_only {
        let mut arrivals = Vec::with_capacity(args.streams);
        let mut open = Vec::with_capacity(args.streams);
        for task in tasks {
            let (times, socket) = tokio::time::timeout(deadline, task).await???;
            arrivals.push(times);
            open.push(socket);
        }
        drop(open);
        write_times(&args, &clock, &[], &arrivals)?;
        println!("streams={} followed {} changes", args.streams, args.changes);
        return Ok(());
    }
    // Let the server settle, then read its memory with every stream idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.server_pid.and_then(rss_kib);

    // Make the changes.
    let api = reqwest::Client::new();
    let api_address = args.api_address.as_deref().unwrap_or(&args.address);
    let url = format!("http://{api_address}/api/v1{}", args.targeting);
    let current: Value = api
        .get(&url)
        .bearer_auth(&args.api_token)
        .send()
        .await?
        .json()
        .await?;
    let mut version = current["version"].as_u64().context("targeting version")?;
    let server_cpu = args
        .server_pid
        .and_then(|pid| cpu_seconds(&pid.to_string()));
    let own_cpu = cpu_seconds("self");
    let mut sent = Vec::with_capacity(args.changes);
    for i in 0..args.changes {
        let body = json!({"on": i % 2 == 0, "fallthrough": {"variation": 0}, "offVariation": 1});
        sent.push(Instant::now());
        let response: Value = api
            .put(&url)
            .bearer_auth(&args.api_token)
            .header("If-Match", format!("\"{version}\""))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        version = response["version"].as_u64().context("new version")?;
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    let mut latencies = Vec::with_capacity(args.streams * args.changes);
    // Per change, when the last stream received it.
    let mut last = vec![Duration::ZERO; args.changes];
    let mut all_arrivals = Vec::with_capacity(args.streams);
    let mut open = Vec::with_capacity(args.streams);
    for task in tasks {
        let (arrivals, socket) = tokio::time::timeout(deadline, task).await???;
        open.push(socket);
        for (i, (arrival, sent)) in arrivals.iter().zip(&sent).enumerate() {
            let latency = arrival.saturating_duration_since(*sent);
            latencies.push(latency);
            last[i] = last[i].max(latency);
        }
        all_arrivals.push(arrivals);
    }
    drop(open);
    write_times(&args, &clock, &sent, &all_arrivals)?;
    let in_order = last.clone();
    last.sort();
    let server_cpu = server_cpu.zip(
        args.server_pid
            .and_then(|pid| cpu_seconds(&pid.to_string())),
    );
    let own_cpu = own_cpu.zip(cpu_seconds("self"));
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "streams={} changes={} deliveries={} opened_in={:.1}s",
        args.streams,
        args.changes,
        latencies.len(),
        opened_in.as_secs_f64()
    );
    println!(
        "latency_ms p50={:.1} p99={:.1} max={:.1}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "last_stream_ms median={:.1} max={:.1}",
        ms(percentile(&last, 50.0)),
        ms(*last.last().unwrap_or(&Duration::ZERO))
    );
    // Every change's "last stream", in the order of the changes: whether a high p99 comes from
    // every change or from a few slow ones.
    let each: Vec<String> = in_order.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    println!("last_stream_ms each={}", each.join(","));
    if let (Some((s0, s1)), Some((c0, c1))) = (server_cpu, own_cpu) {
        println!(
            "cpu_ms_per_change server={:.1} loadgen={:.1}",
            (s1 - s0) * 1000.0 / args.changes as f64,
            (c1 - c0) * 1000.0 / args.changes as f64
        );
    }
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "server_rss_kib before={before} after={after} per_stream_bytes={:.0}",
            (after.saturating_sub(before) as f64 * 1024.0) / args.streams as f64
        );
    }
    Ok(())
}

/// Writes `--times-out`, when asked.
fn write_times(
    args: &Args,
    clock: &WallClock,
    sent: &[Instant],
    arrivals: &[Vec<Instant>],
) -> anyhow::Result<()> {
    let Some(path) = &args.times_out else {
        return Ok(());
    };
    let nanos = |times: &[Instant]| -> Vec<String> {
        times
            .iter()
            .map(|t| clock.unix_nanos(*t).to_string())
            .collect()
    };
    let document = json!({
        "sent": nanos(sent),
        "arrivals": arrivals.iter().map(|a| nanos(a)).collect::<Vec<_>>(),
    });
    std::fs::write(path, document.to_string()).context("the times file")
}
