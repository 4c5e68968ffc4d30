//! The hostile requests of issue #15, rebuilt: decompression bombs, truncated
//! pictures, ids over the storage's key limit, password guessing, and connections
//! that hold the server without sending a request. Each gets its documented answer.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// A well-formed PNG whose header claims 12000 x 4166 16-bit RGBA (inside max_side
/// and max_pixels, 400 MB decoded), with the first rows of zeros compressed in it.
fn sixteen_bit_bomb() -> Vec<u8> {
    let (w, h) = (12_000u32, 4_166u32);
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[16, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib of zeros: stored blocks are enough for a header test; the decoder never
    // gets this far.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A real face JPEG whose frame header is patched to claim `width` x `height`: about
/// a kilobyte that a lenient decoder would expand to width x height x 3 bytes.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(&load("amy1.png"));
    let sof = bytes
        .windows(2)
        .position(|w| w[0] == 0xFF && w[1] == 0xC0)
        .expect("baseline JPEG");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

#[test]
fn decompression_bombs_inside_the_pixel_limits_are_493_from_their_header() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let bombs = [sixteen_bit_bomb(), jpeg_claiming(11_000, 4_500)];
    for bomb in &bombs {
        let r = c.identify("door", &b64(bomb));
        assert_eq!(r.status(), 493, "{:?}", r.raw);
    }
    // Six at once: each is refused from its header, none is decoded.
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let c = c.clone();
            let bomb = b64(&bombs[i % 2]);
            std::thread::spawn(move || c.identify("door", &bomb).status())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 493);
    }
    assert_eq!(http(server.addr, "GET", "/healthz", &[], b"").http, 200);
}

#[test]
fn truncated_face_pictures_are_493_however_they_end() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    c.enroll("door", "amy", "Amy", &photo("amy1.png"));
    let jpg = jpeg(&load("amy2.png"));
    assert_eq!(c.identify("door", &b64(&jpg)).status(), 200);
    // Cut at two thirds (the face is in the rows kept), the end marker put back.
    let mut cut_with_eoi = jpg[..jpg.len() * 2 / 3].to_vec();
    cut_with_eoi.extend_from_slice(&[0xFF, 0xD9]);
    // The last bytes missing.
    let missing_tail = jpg[..jpg.len() - 3].to_vec();
    let png_bytes = fixture("amy2.png");
    let png_missing_last = png_bytes[..png_bytes.len() - 1].to_vec();
    for (what, bytes) in [
        ("JPEG cut, EOI put back", cut_with_eoi),
        ("JPEG missing 3 bytes", missing_tail),
        ("PNG missing its last byte", png_missing_last),
    ] {
        let r = c.identify("door", &b64(&bytes));
        assert_eq!(r.status(), 493, "{what}: {:?}", r.raw);
    }
}

#[test]
fn ids_over_the_key_limit_are_400_and_ascii_ids_of_120_characters_work() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    let emoji_gallery = "🚪".repeat(120);
    let r = c.create_gallery(&emoji_gallery);
    assert_eq!(r.status(), 400, "{:?}", r.raw);
    let long_ascii = "g".repeat(120);
    assert_eq!(c.create_gallery(&long_ascii).status(), 200);
    let emoji_user = "😀".repeat(100);
    let r = c.enroll(&long_ascii, &emoji_user, "Amy", &photo("amy1.png"));
    assert_eq!(r.status(), 400, "{:?}", r.raw);
    let ascii_user = "u".repeat(120);
    let r = c.enroll(&long_ascii, &ascii_user, "Amy", &photo("amy1.png"));
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    // Reads with such ids: 400 as well, never 500.
    let r = c.post(
        "facegallery/list-faces",
        json!({"facegallery_id": emoji_gallery}),
    );
    assert_eq!(r.status(), 400, "{:?}", r.raw);
    let r = c.verify(&long_ascii, &emoji_user, &photo("amy2.png"));
    assert_eq!(r.status(), 400, "{:?}", r.raw);
    assert_eq!(c.list_faces(&long_ascii), vec![ascii_user]);
}

fn login(server: &TestServer, client: &str, password: &str) -> Resp {
    login_from(LOCAL, server, client, password)
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Another peer address on the loopback interface.
const SECOND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const THIRD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn login_from(from: IpAddr, server: &TestServer, client: &str, password: &str) -> Resp {
    let body =
        serde_urlencoded::to_string([("client_id", client), ("password", password)]).unwrap();
    http_on(
        connect_from(from, server.addr),
        "POST",
        "/oauth/client/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

#[test]
fn password_guessing_is_refused_cheaply_once_over_the_budget() {
    let server = TestServer::start();
    server
        .gallery
        .accounts()
        .add_client("app", Some("hunter2"))
        .unwrap();
    // Exact comparison: a trailing NUL is another password.
    assert_eq!(login(&server, "app", "hunter2\u{0}").http, 401);
    assert_eq!(login(&server, "app", "hunter2").http, 200);
    // Guesses: a few are checked (401), then refused before any hashing (429).
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(login(&server, "app", "guess"));
    }
    let refused = answers.iter().filter(|r| r.http == 429).count();
    assert!(
        refused >= 3,
        "{:?}",
        answers.iter().map(|r| r.http).collect::<Vec<_>>()
    );
    let limited = answers.iter().find(|r| r.http == 429).unwrap();
    assert_eq!(limited.raw["status"], "429");
    assert!(limited
        .headers
        .to_ascii_lowercase()
        .contains("retry-after:"));
    // Unknown names are throttled alike (an answer never tells which names exist);
    // from another address, whose own budget is untouched.
    let unknown: Vec<u16> = (0..8)
        .map(|_| login_from(SECOND, &server, "nobody", "x").http)
        .collect();
    assert_eq!(
        unknown.iter().filter(|&&s| s == 401).count(),
        5,
        "{unknown:?}"
    );
}

#[test]
fn one_address_guessing_many_names_is_refused_cheaply_and_other_addresses_still_log_in() {
    let server = TestServer::start();
    server
        .gallery
        .accounts()
        .add_client("app", Some("hunter2"))
        .unwrap();
    // A different name each time, so no name's budget is the limit: the address's is.
    let answers: Vec<u16> = (0..16)
        .map(|i| login_from(SECOND, &server, &format!("guess{i}"), "x").http)
        .collect();
    let checked = answers.iter().filter(|&&s| s == 401).count();
    assert_eq!(
        checked,
        facegate::gallery::PEER_LOGIN_BURST as usize,
        "{answers:?}"
    );
    assert!(answers[checked..].iter().all(|&s| s == 429), "{answers:?}");
    // Limited, that address is refused even with the right password, before hashing...
    let r = login_from(SECOND, &server, "app", "hunter2");
    assert_eq!(r.http, 429, "{:?}", r.raw);
    assert!(r.headers.to_ascii_lowercase().contains("retry-after:"));
    // ...while the client logs in from its own address, and a third address still gets
    // its wrong passwords checked (401, not 429).
    assert_eq!(login_from(LOCAL, &server, "app", "hunter2").http, 200);
    assert_eq!(login_from(THIRD, &server, "someone", "x").http, 401);
}

#[test]
fn each_successful_login_past_the_cap_revokes_the_oldest_oauth_token() {
    let server = TestServer::start();
    let cli = server.add_client("app2");
    server
        .gallery
        .accounts()
        .add_client("app", Some("pw"))
        .unwrap();
    let tokens: Vec<String> = (0..facegate::gallery::MAX_OAUTH_TOKENS + 3)
        .map(|_| {
            let r = login(&server, "app", "pw");
            assert_eq!(r.http, 200, "{:?}", r.raw);
            r.raw["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    let live = server
        .gallery
        .accounts()
        .list_clients()
        .unwrap()
        .into_iter()
        .find(|c| c.name == "app")
        .unwrap()
        .tokens;
    // The cap's oauth tokens, and the one `client add` made.
    assert_eq!(live, facegate::gallery::MAX_OAUTH_TOKENS + 1);
    let newest = Client {
        addr: server.addr,
        token: tokens.last().unwrap().clone(),
        prefix: "/face-api".into(),
    };
    assert_eq!(newest.post("client/get-counters", json!({})).status(), 200);
    let other = Client {
        token: cli,
        ..newest.clone()
    };
    assert_eq!(other.post("client/get-counters", json!({})).status(), 200);
}

/// Reads until the server closes; `None` if it is still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(_) => return None,
        }
    }
}

fn short_timeouts() -> TestServer {
    TestServer::start_with_options(
        |_| {},
        |o| {
            o.limits.header_timeout = Duration::from_secs(1);
            o.limits.body_timeout = Duration::from_secs(1);
            o.limits.max_connections_per_ip = 8;
        },
    )
}

#[test]
fn a_connection_that_sends_nothing_or_half_a_head_is_closed_after_the_header_timeout() {
    let server = short_timeouts();
    let mut idle = TcpStream::connect(server.addr).unwrap();
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"POST /face-api/client/get-counters HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(10)).is_some());
    assert!(closed_within(&mut half, Duration::from_secs(10)).is_some());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(http(server.addr, "GET", "/healthz", &[], b"").http, 200);
}

#[test]
fn a_body_without_a_token_is_never_read_and_a_trickled_one_answers_408() {
    let server = short_timeouts();
    // 7 MB announced, nothing sent, no token: 401 at once.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(
        b"POST /face-api/facegallery/identify-face HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7340031\r\n\r\n{",
    )
    .unwrap();
    let answer = closed_within(&mut s, Duration::from_secs(10)).expect("answered");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // With a token, a body trickled slower than the body timeout: 408, envelope.
    let token = server.add_client("kiosk");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(
        format!("POST /face-api/client/get-counters HTTP/1.1\r\nHost: x\r\nAccesstoken: {token}\r\nConnection: close\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .unwrap();
    let resp = read_response(&mut s);
    assert_eq!(resp.http, 408, "{:?}", resp.raw);
    assert_eq!(resp.status(), 408);
}

/// Opens the kiosk event stream (a request that stays in progress) and reads its head.
fn busy_stream(server: &TestServer, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(
        format!("GET /face-api/kiosk/events HTTP/1.1\r\nHost: x\r\nAccesstoken: {token}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    s
}

/// Whether the server has closed `stream` (EOF or reset) within a short wait.
fn is_closed(stream: &mut TcpStream) -> bool {
    closed_within(stream, Duration::from_millis(500)).is_some()
}

#[test]
fn an_idle_flood_gives_way_to_new_connections_but_busy_ones_are_kept() {
    // A small cap: 4 connections in all and from one address.
    let server = TestServer::start_with_options(
        |_| {},
        |o| {
            o.limits.max_connections = 4;
            o.limits.max_connections_per_ip = 4;
        },
    );
    let token = server.add_client("kiosk");
    // One request in progress (an event stream), then idle connections that fill the
    // cap, then a flood of 40 more: each new one closes the one idle longest.
    let mut busy = busy_stream(&server, &token);
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..43 {
        idle.push(TcpStream::connect(server.addr).unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    // /healthz from the flood's own address gets in (closing the oldest idle one).
    let r = http(server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.http, 200, "{:?}", r.raw);
    // Every flood connection but the newest two (with /healthz, at the cap of 4
    // beside the stream) has been closed; the busy stream has not.
    let closed: Vec<bool> = idle.iter_mut().map(is_closed).collect();
    assert!(closed[..41].iter().all(|&c| c), "{closed:?}");
    assert!(!closed[41] && !closed[42], "{closed:?}");
    server
        .gallery
        .record_visit(
            facegate::store::VisitRecord {
                client: "kiosk".into(),
                gallery: "door".into(),
                device_id: "door-1".into(),
                user_id: Some("amy".into()),
                user_name: Some("Amy".into()),
                similarity: 0.9,
                mask: false,
                timestamp_ms: 1,
                face_jpeg: Vec::new(),
            },
            false,
        )
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("\"amy\"") {
        let n = busy.read(&mut buf).expect("the busy stream stays open");
        assert!(n > 0, "the busy stream was closed");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // When every connection is busy, a new one is closed at once, unanswered.
    drop(idle);
    let _streams: Vec<TcpStream> = (0..3).map(|_| busy_stream(&server, &token)).collect();
    let mut extra = TcpStream::connect(server.addr).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = closed_within(&mut extra, Duration::from_secs(5)).expect("closed at once");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

#[test]
fn a_full_address_cap_does_not_keep_other_addresses_out() {
    let server = TestServer::start_with_options(
        |_| {},
        |o| {
            o.limits.max_connections = 64;
            o.limits.max_connections_per_ip = 4;
        },
    );
    let _flood: Vec<TcpStream> = (0..20).map(|_| connect_from(SECOND, server.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = http_on(
        connect_from(THIRD, server.addr),
        "GET",
        "/healthz",
        &[],
        b"",
    );
    assert_eq!(r.http, 200);
    let r = http_on(
        connect_from(SECOND, server.addr),
        "GET",
        "/healthz",
        &[],
        b"",
    );
    assert_eq!(r.http, 200);
}

#[test]
fn oversized_heads_and_uris_are_answered_in_the_envelope() {
    let server = TestServer::start();
    let big = "x".repeat(40 * 1024);
    let r = http(server.addr, "GET", "/healthz", &[("X-Big", &big)], b"");
    assert_eq!(r.http, 431);
    assert_eq!(r.status(), 431, "{:?}", r.raw);
    let path = format!("/face-api/client/get-counters?{}", "a".repeat(10_000));
    let r = http(server.addr, "GET", &path, &[], b"");
    assert_eq!(r.http, 414);
    assert_eq!(r.status(), 414, "{:?}", r.raw);
}
