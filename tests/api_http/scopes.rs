//! Kiosk tokens over real HTTP: such a token reads its client's kiosk events and frame
//! and nothing else (403 in the envelope everywhere else); a full-power token is never
//! accepted in a URL; the kiosk page works with a kiosk token.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use facegate::api::Endpoint;
use facegate::store::VisitRecord;
use serde_json::json;

use crate::support::*;

fn visit(client: &str, user: &str, at_ms: u64) -> VisitRecord {
    VisitRecord {
        client: client.into(),
        gallery: "door".into(),
        device_id: "door-1".into(),
        user_id: Some(user.into()),
        user_name: Some(user.into()),
        similarity: 0.9,
        mask: false,
        timestamp_ms: at_ms,
        face_jpeg: Vec::new(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Opens the kiosk event stream; returns the HTTP status, and the `user_id`s of the
/// first `count` events when it is 200.
fn kiosk_events(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    count: usize,
) -> (u16, Vec<String>) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let code: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    if code != 200 {
        return (code, Vec::new());
    }
    let mut users = Vec::new();
    while users.len() < count {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream closed");
        if let Some(data) = line.trim_end().strip_prefix("data:") {
            let event: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
            users.push(event["user_id"].as_str().unwrap_or("").to_string());
        }
    }
    (code, users)
}

#[test]
fn a_kiosk_token_reads_its_kiosk_events_and_every_other_endpoint_is_403() {
    let server = TestServer::start();
    let full = server.client("door");
    assert_eq!(full.create_gallery("door").status(), 200);
    let kiosk_token = server.gallery.accounts().add_kiosk_token("door").unwrap();
    let kiosk = Client {
        token: kiosk_token.clone(),
        ..full.clone()
    };
    // Every Face API endpoint, under both prefixes, with each method it takes: 403 in
    // the envelope with the documented message, the body never looked at.
    for prefix in ["/face-api", "/risetai/face-api"] {
        let kiosk = Client {
            prefix: prefix.into(),
            ..kiosk.clone()
        };
        for ep in Endpoint::ALL {
            for method in ep.methods() {
                let r = kiosk.call(
                    method.as_str(),
                    ep.path(),
                    &json!({"facegallery_id": "door", "user_id": "amy", "user_name": "Amy",
                        "image": photo("amy1.png")}),
                );
                assert_eq!((r.http, r.status()), (403, 403), "{prefix}/{}", ep.path());
                assert_eq!(
                    r.body()["status_message"],
                    "Token scope does not allow this endpoint"
                );
            }
        }
    }
    // Nothing happened: the gallery is as it was, no hit was counted.
    assert!(full.list_faces("door").is_empty());
    // Also as `Authorization: Bearer`.
    let r = http(
        server.addr,
        "POST",
        "/face-api/facegallery/my-facegalleries",
        &[("Authorization", &format!("Bearer {kiosk_token}"))],
        b"{}",
    );
    assert_eq!(r.status(), 403);
    // The token endpoints: a kiosk token is no password; revoking it needs the
    // client's password like any token.
    let r = http(
        server.addr,
        "POST",
        "/oauth/token/revoke",
        &[("Accesstoken", &kiosk_token)],
        b"client_id=door&password=x",
    );
    assert_eq!(r.http, 401);

    // Its client's kiosk events (in the URL, as EventSource sends it), and only its
    // client's: another client's visits are not streamed.
    let at = now_ms();
    server
        .gallery
        .record_visit(visit("other", "stranger", at), false)
        .unwrap();
    server
        .gallery
        .record_visit(visit("door", "amy", at + 1), false)
        .unwrap();
    let (code, users) = kiosk_events(
        &server,
        &format!("/face-api/kiosk/events?access_token={kiosk_token}"),
        &[],
        1,
    );
    assert_eq!((code, users), (200, vec!["amy".to_string()]));
    let (code, _) = kiosk_events(
        &server,
        "/risetai/face-api/kiosk/events",
        &[("Accesstoken", &kiosk_token)],
        1,
    );
    assert_eq!(code, 200);
    // The frame route: authenticated (no camera here, so 404), not refused.
    let r = http(
        server.addr,
        "GET",
        &format!("/face-api/kiosk/frame.jpg?access_token={kiosk_token}"),
        &[],
        b"",
    );
    assert_eq!(r.status(), 404);
    // The page itself needs no token; it takes the kiosk token from its URL.
    let page = http(server.addr, "GET", "/kiosk", &[], b"");
    assert_eq!(page.http, 200);

    // Revoked with the client's tokens, it opens nothing.
    server.gallery.accounts().revoke_all("door").unwrap();
    let (code, _) = kiosk_events(
        &server,
        &format!("/face-api/kiosk/events?access_token={kiosk_token}"),
        &[],
        1,
    );
    assert_eq!(code, 401);
}

#[test]
fn a_full_power_token_is_refused_in_a_url_and_still_works_from_the_headers() {
    let server = TestServer::start();
    let full = server.client("door");
    for path in [
        format!("/face-api/kiosk/events?access_token={}", full.token),
        format!("/face-api/kiosk/frame.jpg?access_token={}", full.token),
    ] {
        let r = http(server.addr, "GET", &path, &[], b"");
        assert_eq!((r.http, r.status()), (403, 403), "{path}");
        assert!(
            r.body()["status_message"]
                .as_str()
                .unwrap()
                .contains("--scope kiosk"),
            "{:?}",
            r.raw
        );
    }
    server
        .gallery
        .record_visit(visit("door", "amy", now_ms()), false)
        .unwrap();
    let (code, users) = kiosk_events(
        &server,
        "/face-api/kiosk/events",
        &[("Accesstoken", &full.token)],
        1,
    );
    assert_eq!((code, users), (200, vec!["amy".to_string()]));
    // A bad token in the URL is 401 as before, not a hint about full tokens.
    let r = http(
        server.addr,
        "GET",
        "/face-api/kiosk/events?access_token=not-a-token-at-all-really",
        &[],
        b"",
    );
    assert_eq!(r.status(), 401);
    // The full-power token still does everything else.
    assert_eq!(full.post("client/get-counters", json!({})).status(), 200);
}

#[test]
fn a_client_holds_a_bounded_number_of_event_streams_and_a_closed_one_frees_its_place() {
    let server = TestServer::start();
    let token = server.gallery.accounts().add_kiosk_token("door").unwrap();
    let path = format!("/face-api/kiosk/events?access_token={token}");
    let open = || {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    };
    let mut streams: Vec<_> = (0..facegate::api::MAX_EVENT_STREAMS_PER_CLIENT)
        .map(|_| {
            let (line, reader) = open();
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            reader
        })
        .collect();
    // One more: 429 in the envelope.
    let r = http(server.addr, "GET", &path, &[], b"");
    assert_eq!((r.http, r.status()), (429, 429), "{:?}", r.raw);
    // Another client's screens are not limited by this one's.
    let other = server.gallery.accounts().add_kiosk_token("hall").unwrap();
    let (code, _) = kiosk_events(
        &server,
        &format!("/face-api/kiosk/events?access_token={other}"),
        &[],
        0,
    );
    assert_eq!(code, 200);
    // A screen that goes away gives its place back.
    drop(streams.pop());
    let mut reopened = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if open().0.starts_with("HTTP/1.1 200") {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "the closed stream's place was never given back");
}
