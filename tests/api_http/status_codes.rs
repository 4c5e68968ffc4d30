//! Every status code of the list (and our documented extra ones) is reachable.

use serde_json::{json, Value};

use crate::support::*;

fn setup() -> (TestServer, Client) {
    let server = TestServer::start();
    let c = server.client("kiosk");
    assert_eq!(c.create_gallery("door").status(), 200);
    (server, c)
}

#[test]
fn missing_or_unknown_token_is_401() {
    let (server, c) = setup();
    let r = http(server.addr, "POST", "/face-api/client/register", &[], b"");
    assert_eq!((r.http, r.status()), (401, 401));
    let bad = Client {
        token: "x".repeat(43),
        ..c.clone()
    };
    assert_eq!(bad.post("client/register", Value::Null).status(), 401);
    let mut forged = c.token.clone();
    forged.pop();
    forged.push(if c.token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        Client {
            token: forged,
            ..c.clone()
        }
        .post("client/register", Value::Null)
        .status(),
        401
    );
    // Authorization: Bearer works as well.
    let auth = format!("Bearer {}", c.token);
    let r = http(
        server.addr,
        "POST",
        "/face-api/client/register",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status(), 200);
}

#[test]
fn missing_fields_answer_451_to_456() {
    let (_server, c) = setup();
    let enroll = |body: Value| c.post("facegallery/enroll-face", body).status();
    let full = json!({"user_id": "u", "user_name": "n", "facegallery_id": "door", "image": photo("amy1.png")});
    let without = |key: &str| {
        let mut b = full.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    assert_eq!(enroll(without("image")), 451);
    assert_eq!(enroll(without("user_id")), 452);
    assert_eq!(enroll(without("user_name")), 453);
    assert_eq!(enroll(without("facegallery_id")), 454);
    let mut null_image = full.clone();
    null_image["image"] = Value::Null;
    assert_eq!(enroll(null_image), 451);
    let mut empty_user = full.clone();
    empty_user["user_id"] = json!("");
    assert_eq!(enroll(empty_user), 452);
    let cmp = |body: Value| c.post("compare-images", body).status();
    assert_eq!(cmp(json!({"source_image": photo("amy1.png")})), 455);
    assert_eq!(cmp(json!({"target_image": photo("amy1.png")})), 456);
    assert_eq!(c.post("facegallery/list-faces", json!({})).status(), 454);
    assert_eq!(
        c.post("facegallery/create-facegallery", json!({"trx_id": "x"}))
            .status(),
        454
    );
}

#[test]
fn image_problems_answer_490_to_496() {
    let (_server, c) = setup();
    let not_base64 = "this is %%% not base64";
    let text = b64(b"hello, I am a text file and not a picture");
    let png = fixture("amy1.png");
    let truncated = b64(&png[..png.len() / 2]);
    assert_eq!(c.identify("door", not_base64).status(), 490);
    assert_eq!(c.identify("door", &text).status(), 491);
    assert_eq!(c.identify("door", &truncated).status(), 493);
    assert_eq!(c.identify("door", &photo("white.png")).status(), 412);
    let cmp = |s: &str, t: &str| {
        c.post(
            "compare-images",
            json!({"source_image": s, "target_image": t}),
        )
        .status()
    };
    let amy = photo("amy1.png");
    assert_eq!(cmp(&amy, not_base64), 492);
    assert_eq!(cmp(not_base64, &amy), 494);
    assert_eq!(cmp(&text, &amy), 495);
    assert_eq!(cmp(&amy, &text), 496);
    assert_eq!(cmp(&truncated, &amy), 493);
    assert_eq!(cmp(&amy, &photo("white.png")), 412);
}

#[test]
fn unknown_user_is_415_unknown_gallery_is_416_duplicate_gallery_is_409() {
    let (_server, c) = setup();
    assert_eq!(c.verify("door", "nobody", &photo("amy1.png")).status(), 415);
    assert_eq!(
        c.post(
            "facegallery/delete-face",
            json!({"facegallery_id": "door", "user_id": "nobody"})
        )
        .status(),
        415
    );
    assert_eq!(c.identify("nowhere", &photo("amy1.png")).status(), 416);
    assert_eq!(
        c.enroll("nowhere", "u", "n", &photo("amy1.png")).status(),
        416
    );
    assert_eq!(
        c.post(
            "facegallery/delete-facegallery",
            json!({"facegallery_id": "nowhere"})
        )
        .status(),
        416
    );
    let r = c.create_gallery("door");
    assert_eq!((r.http, r.status()), (409, 409));
    // client/register twice is fine: the default gallery is simply returned.
    assert_eq!(c.post("client/register", Value::Null).status(), 200);
    assert_eq!(c.post("client/register", Value::Null).status(), 200);
}

#[test]
fn malformed_requests_are_400() {
    let (server, c) = setup();
    let send = |method: &str, body: &[u8]| {
        http(
            server.addr,
            method,
            "/face-api/facegallery/list-faces",
            &[("Accesstoken", &c.token)],
            body,
        )
        .status()
    };
    assert_eq!(send("POST", b"{not json"), 400);
    assert_eq!(send("POST", b"[1,2,3]"), 400);
    assert_eq!(send("POST", b"\"door\""), 400);
    assert_eq!(send("POST", &[0xff, 0xfe, 0x00]), 400);
    assert_eq!(send("PUT", b"{}"), 400);
    assert_eq!(
        send(
            "POST",
            json!({"facegallery_id": {"a": 1}}).to_string().as_bytes()
        ),
        400
    );
    assert_eq!(
        send(
            "POST",
            json!({"facegallery_id": "x".repeat(121)})
                .to_string()
                .as_bytes()
        ),
        400
    );
    assert_eq!(
        send(
            "POST",
            json!({"facegallery_id": "door", "trx_id": "t".repeat(121)})
                .to_string()
                .as_bytes()
        ),
        400
    );
    let r = c.post(
        "facegallery/enroll-face",
        json!({"user_id": "u", "user_name": "n", "facegallery_id": "door", "image": photo("amy1.png"), "force_register": "maybe"}),
    );
    assert_eq!(r.status(), 400);
    let r = c.post(
        "facegallery/enroll-face-ktp",
        json!({"user_id": "u", "user_name": "n", "facegallery_id": "door", "image": photo("amy1.png"), "minimum_similarity": 7}),
    );
    assert_eq!(r.status(), 400);
}

// 503 (busy): admission::a_full_queue_and_a_passed_deadline_answer_503_with_retry_after.

#[test]
fn a_body_over_the_limit_is_498_in_the_body_and_413_on_the_status_line() {
    let server = TestServer::start_with(|c| c.server.body_limit_bytes = 64 * 1024);
    let c = server.client("kiosk");
    let big = "A".repeat(100 * 1024);
    let r = c.post(
        "facegallery/identify-face",
        json!({"facegallery_id": "door", "image": big}),
    );
    assert_eq!((r.http, r.status()), (413, 498), "{:?}", r.raw);
    // Just under the limit is read normally.
    let r = c.post(
        "facegallery/identify-face",
        json!({"facegallery_id": "door", "image": "A".repeat(60 * 1024)}),
    );
    assert_eq!(r.status(), 416);
    // A declared length over the limit, with `Expect: 100-continue` and no body sent
    // yet: answered 498 without waiting for the body (which would end in 408).
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!(
            "POST /face-api/facegallery/identify-face HTTP/1.1\r\nHost: x\r\n\
             Accesstoken: {}\r\nContent-Length: 8000000\r\nExpect: 100-continue\r\n\
             Connection: close\r\n\r\n",
            c.token
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut stream);
    assert_eq!((r.http, r.status()), (413, 498), "{:?}", r.raw);
}

#[test]
fn unknown_paths_are_404() {
    // Elsewhere: 403 endpoints::exhausted_quotas_answer_403_and_get_counters_reports_what_remains,
    // 411 endpoints::identify_returns_411_for_an_unenrolled_person, 412 (white picture)
    // above, 413 endpoints::enroll_refuses_a_small_face_with_413_unless_forced.
    let (_server, c) = setup();
    let r = c.post("no/such/endpoint", json!({}));
    assert_eq!((r.http, r.status()), (404, 404));
}
