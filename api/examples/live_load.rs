//! Load client for the live relay: N WebRTC viewers (str0m as the client, no decoding)
//! against a running Panoptes, and the Panoptes process's CPU while they watch.
//!
//! ```text
//! cargo run --release -p panoptes-api --example live_load -- \
//!     --base http://127.0.0.1:8080 --user NAME --password PW --camera lobby --stream main \
//!     --pid $(pidof panoptes) --secs 20 --viewers 1,10,50
//! ```
//!
//! `--whep-url URL` (without `--user`) points it at another WHEP endpoint, e.g. the
//! GStreamer reference relay of scripts/bench-webrtcbin.py; `--bind-ip` sets the viewers'
//! address; `--metrics-token` reads Panoptes' relay delay from `/metrics`.
//!
//! For each count it first measures the process with no viewer (ingest and the rest), then
//! with the viewers connected, and prints the difference per viewer.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
struct Args {
    base: String,
    user: String,
    password: String,
    camera: String,
    stream: String,
    pid: u32,
    secs: u64,
    viewers: Vec<usize>,
    metrics_token: Option<String>,
    whep_url: Option<String>,
    bind_ip: String,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8080".into(),
        user: String::new(),
        password: String::new(),
        camera: String::new(),
        stream: "main".into(),
        pid: 0,
        secs: 20,
        viewers: vec![1, 10, 50],
        metrics_token: None,
        whep_url: None,
        bind_ip: "127.0.0.1".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--base" => a.base = v,
            "--user" => a.user = v,
            "--password" => a.password = v,
            "--camera" => a.camera = v,
            "--stream" => a.stream = v,
            "--pid" => a.pid = v.parse().expect("--pid"),
            "--secs" => a.secs = v.parse().expect("--secs"),
            "--whep-url" => a.whep_url = Some(v),
            "--bind-ip" => a.bind_ip = v,
            "--metrics-token" => a.metrics_token = Some(v),
            "--viewers" => a.viewers = v.split(',').map(|n| n.parse().expect("--viewers")).collect(),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// utime + stime of a process, in clock ticks (100 Hz).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    let after = &stat[stat.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

async fn cpu_percent(pid: u32, secs: u64) -> f64 {
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (dt, dc) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0);
    dc as f64 / 100.0 / dt * 100.0
}

struct Session {
    cookie: String,
    csrf: String,
}

async fn login(http: &reqwest::Client, a: &Args) -> Session {
    if a.user.is_empty() {
        // A WHEP endpoint without login (the reference relay).
        return Session { cookie: String::new(), csrf: String::new() };
    }
    let r = http
        .post(format!("{}/api/auth/login", a.base))
        .json(&serde_json::json!({"name": a.user, "password": a.password}))
        .send()
        .await
        .expect("login");
    assert!(r.status().is_success(), "login: {}", r.status());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    Session { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() }
}

/// One viewer: offers receive-only video, counts the media bytes it gets.
async fn viewer(
    http: reqwest::Client,
    a: Args,
    s: Arc<Session>,
    bytes: Arc<AtomicU64>,
    frames: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let socket = UdpSocket::bind((a.bind_ip.as_str(), 0)).await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder().set_stats_interval(None).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let url = match &a.whep_url {
        Some(u) => u.clone(),
        None => format!("{}/api/live/{}/{}/whep", a.base, a.camera, a.stream),
    };
    let r = http
        .post(url)
        .header("content-type", "application/sdp")
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .body(offer.to_sdp_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "WHEP POST");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let answer = SdpAnswer::from_sdp_string(&r.text().await.unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let mut buf = vec![0u8; 2048];
    loop {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::MediaData(m)) => {
                    bytes.fetch_add(m.data.len() as u64, Ordering::Relaxed);
                    frames.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        let wait = timeout.saturating_duration_since(Instant::now());
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = socket.recv_from(&mut buf) => {
                let (n, source): (usize, SocketAddr) = r.unwrap();
                if let Ok(rx) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), rx));
                }
            }
            _ = tokio::time::sleep(wait) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
    let _ = http
        .delete(format!("{}{location}", a.base))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .send()
        .await;
}

/// Quantiles of the relay's delay histogram (rendered as a summary), in ms.
async fn relay_delay(http: &reqwest::Client, a: &Args) -> String {
    let Some(token) = &a.metrics_token else { return "-".into() };
    let Ok(r) = http.get(format!("{}/metrics", a.base)).bearer_auth(token).send().await else {
        return "-".into();
    };
    let text = r.text().await.unwrap_or_default();
    let q = |q: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("panoptes_live_relay_delay_seconds{{quantile=\"{q}\"}}")))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map(|v| format!("{:.1}", v * 1000.0))
            .unwrap_or_else(|| "?".into())
    };
    format!("{} / {} / {}", q("0.5"), q("0.99"), q("1"))
}

#[tokio::main]
async fn main() {
    let a = args();
    let http = reqwest::Client::new();
    let s = Arc::new(login(&http, &a).await);
    println!(
        "| viewers | relay CPU, no viewer | with viewers | per viewer | Mbit/s received | frames/s per viewer | delay in relay p50 / p99 / max (ms) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &n in &a.viewers {
        let idle = cpu_percent(a.pid, a.secs).await;
        let cancel = CancellationToken::new();
        let (bytes, frames) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(viewer(
                    http.clone(),
                    a.clone(),
                    s.clone(),
                    bytes.clone(),
                    frames.clone(),
                    cancel.clone(),
                ))
            })
            .collect();
        // Let every viewer connect and get past its start burst.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (b0, f0, t0) = (bytes.load(Ordering::Relaxed), frames.load(Ordering::Relaxed), Instant::now());
        let busy = cpu_percent(a.pid, a.secs).await;
        let dt = t0.elapsed().as_secs_f64();
        let mbit = (bytes.load(Ordering::Relaxed) - b0) as f64 * 8.0 / dt / 1e6;
        let fps = (frames.load(Ordering::Relaxed) - f0) as f64 / dt / n as f64;
        println!(
            "| {n} | {idle:.1} % | {busy:.1} % | {:.2} % | {mbit:.1} | {fps:.1} | {} |",
            (busy - idle) / n as f64,
            relay_delay(&http, &a).await
        );
        cancel.cancel();
        for t in tasks {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
