//! identify-face over HTTP against a gallery of N templates: N - 1 synthetic ones
//! (random unit vectors stored through `Gallery::enroll_embeddings`, by a gallery
//! closed again before the measured one opens) plus the real face of the query
//! picture, enrolled through the API's use case. Reports the index build time at start,
//! the index memory, the process RSS growth, and the median / p90 latency of 30
//! identify-face calls on a 640x480 JPEG, one client.
//!
//!   cargo bench --bench identify_scale                    # 1k 10k 100k 1M
//!   cargo bench --bench identify_scale -- 1000 10000       # chosen sizes

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use facegate::api::{self, ApiState, ServerOptions};
use facegate::config;
use facegate::gallery::{EnrollRequest, Gallery, PrecomputedFace, Quota, Settings};
use facegate::runtime::Runtime;
use facegate::store::Store;
use facegate::vision::Pipeline;

const CALLS: usize = 30;

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: a quick smoke run.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes = match (sizes.is_empty(), benching) {
        (false, _) => sizes,
        (true, true) => vec![1_000, 10_000, 100_000, 1_000_000],
        (true, false) => vec![1_000],
    };
    let cfg = config::merge(
        None,
        "-",
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("config");
    let runtime = Runtime::locate_and_load(cfg.runtime_library()).expect("LiteRT");
    let pipeline = Arc::new(Pipeline::load(&runtime, cfg.pipeline_options()).expect("models"));
    let picture = std::fs::read("tests/fixtures/vision/group_640x480.jpg").expect("picture");
    let image_b64 = base64::engine::general_purpose::STANDARD.encode(&picture);
    println!("templates\tindex_build_s\tindex_mb\trss_growth_mb\tmedian_ms\tp90_ms\tstatus");
    for n in sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path(), 64).expect("store"));
        fill(&store, &pipeline, &cfg, n.saturating_sub(1));
        let rss_before = rss_mb();
        let started = Instant::now();
        let gallery = Arc::new(
            Gallery::open(store.clone(), pipeline.clone(), Settings::from_config(&cfg))
                .expect("gallery"),
        );
        let build = started.elapsed();
        let token = gallery
            .accounts()
            .add_client("bench", None)
            .expect("client");
        gallery
            .enroll(
                "bench",
                &EnrollRequest {
                    gallery: "g",
                    user_id: "the-real-one",
                    user_name: "Real",
                    image: &picture,
                    force: true,
                },
            )
            .expect("enroll");
        let rss_growth = rss_mb() - rss_before;
        let index_mb = gallery.index_memory_bytes() as f64 / (1024.0 * 1024.0);
        let (median, p90, status) = measure(gallery, &cfg, &token, &image_b64);
        println!(
            "{n}\t{:.2}\t{index_mb:.1}\t{rss_growth:.0}\t{:.1}\t{:.1}\t{status}",
            build.as_secs_f64(),
            ms(median),
            ms(p90)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// N synthetic users of one template each in gallery "g" of client "bench" (no quota,
/// no sync), written through a gallery that is dropped before the measured one opens.
fn fill(store: &Arc<Store>, pipeline: &Arc<Pipeline>, cfg: &config::Config, n: u64) {
    let settings = Settings {
        quota: Quota::default(),
        outbox: None,
        ..Settings::from_config(cfg)
    };
    let filler = Gallery::open(store.clone(), pipeline.clone(), settings).expect("gallery");
    filler.create_gallery("bench", "g").expect("gallery");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut done = 0;
    while done < n {
        let batch = (n - done).min(50_000);
        let faces: Vec<PrecomputedFace> = (0..batch)
            .map(|i| {
                let user = format!("synthetic{}", done + i);
                PrecomputedFace {
                    user_name: user.clone(),
                    user_id: user,
                    embedding: (0..128).map(|_| next()).collect(),
                    crop_jpeg: None,
                }
            })
            .collect();
        filler
            .enroll_embeddings("bench", "g", &faces)
            .expect("fill");
        done += batch;
    }
}

fn measure(
    gallery: Arc<Gallery>,
    cfg: &config::Config,
    token: &str,
    image: &str,
) -> (Duration, Duration, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = ApiState::new(gallery, ServerOptions::from_config(cfg));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let body = format!("{{\"facegallery_id\":\"g\",\"image\":\"{image}\",\"trx_id\":\"bench\"}}");
    let mut status = String::new();
    for _ in 0..3 {
        status = identify(addr, token, &body);
    }
    let mut times: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let t = Instant::now();
            identify(addr, token, &body);
            t.elapsed()
        })
        .collect();
    times.sort();
    let _ = stop.send(());
    rt.shutdown_timeout(Duration::from_secs(1));
    (times[CALLS / 2], times[CALLS * 9 / 10], status)
}

/// One identify-face call; returns the body's status and matched user.
fn identify(addr: SocketAddr, token: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /face-api/facegallery/identify-face HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccesstoken: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let b = &v["risetai"];
    format!(
        "{}:{}",
        b["status"].as_str().unwrap_or("?"),
        b["return"][0]["user_id"].as_str().unwrap_or("-")
    )
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
