//! Compatibility with clients of the deployed service.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn every_route_answers_under_both_prefixes() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    let risetai = Client {
        prefix: "/risetai/face-api".into(),
        ..c.clone()
    };
    assert_eq!(risetai.create_gallery("door").status(), 200);
    assert_eq!(
        risetai
            .enroll("door", "amy", "Amy", &photo("amy1.png"))
            .status(),
        200
    );
    assert_eq!(
        c.identify("door", &photo("amy2.png")).body()["return"][0]["user_id"],
        "amy"
    );
    assert_eq!(
        risetai.identify("door", &photo("amy2.png")).body()["return"][0]["user_id"],
        "amy"
    );
    assert_eq!(risetai.list_faces("door"), ["amy"]);
}

#[test]
fn flat_envelope_answers_without_the_risetai_wrapper() {
    let server = TestServer::start_with(|c| c.server.envelope = facegate::config::Envelope::Flat);
    let c = server.client("kiosk");
    let r = c.post("client/register", Value::Null);
    assert!(r.raw.get("risetai").is_none());
    assert_eq!(r.raw["status"], "200");
    assert_eq!(r.raw["facegallery_id"], "kiosk@trial");
}

#[test]
fn always_200_keeps_the_code_in_the_body_only() {
    let server = TestServer::start_with(|c| {
        c.server.http_status = facegate::config::HttpStatusRule::Always200
    });
    let c = server.client("kiosk");
    let r = c.identify("nowhere", &photo("amy1.png"));
    assert_eq!((r.http, r.status()), (200, 416));
    let r = http(server.addr, "POST", "/face-api/client/register", &[], b"");
    assert_eq!((r.http, r.status()), (200, 401));
}

#[test]
fn list_faces_and_get_counters_accept_get_with_body_get_with_query_and_post() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door@x");
    c.enroll("door@x", "amy", "Amy", &photo("amy1.png"));
    let expect = json!([{"user_id": "amy", "user_name": "Amy"}]);
    let body = json!({"facegallery_id": "door@x", "trx_id": "t"});
    assert_eq!(
        c.call("GET", "facegallery/list-faces", &body).body()["faces"],
        expect
    );
    assert_eq!(
        c.call("POST", "facegallery/list-faces", &body).body()["faces"],
        expect
    );
    let q = c.call(
        "GET",
        "facegallery/list-faces?facegallery_id=door%40x&trx_id=t",
        &Value::Null,
    );
    assert_eq!(q.body()["faces"], expect, "{:?}", q.raw);
    for (method, path) in [
        ("GET", "client/get-counters"),
        ("POST", "client/get-counters"),
        ("GET", "client/get-counters?trx_id=abc"),
    ] {
        let r = c.call(method, path, &json!({"trx_id": "t"}));
        assert_eq!(r.status(), 200, "{method} {path}");
        assert!(r.body()["remaining_limit"]["n_face"].is_u64());
    }
    assert_eq!(
        c.call("GET", "client/get-counters", &Value::Null).status(),
        200
    );
}

#[test]
fn deletes_accept_delete_with_body_and_post() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    for g in ["a", "b"] {
        c.create_gallery(g);
        c.enroll(g, "amy", "Amy", &photo("amy1.png"));
        c.enroll(g, "raj", "Raj", &photo("raj1.png"));
    }
    let face = |g: &str| json!({"facegallery_id": g, "user_id": "amy"});
    assert_eq!(
        c.call("DELETE", "facegallery/delete-face", &face("a"))
            .status(),
        200
    );
    assert_eq!(
        c.call("POST", "facegallery/delete-face", &face("b"))
            .status(),
        200
    );
    assert_eq!(c.list_faces("a"), ["raj"]);
    assert_eq!(c.list_faces("b"), ["raj"]);
    assert_eq!(
        c.call(
            "DELETE",
            "facegallery/delete-facegallery",
            &json!({"facegallery_id": "a"})
        )
        .status(),
        200
    );
    assert_eq!(
        c.call(
            "POST",
            "facegallery/delete-facegallery",
            &json!({"facegallery_id": "b"})
        )
        .status(),
        200
    );
    assert_eq!(c.call("POST", "client/delete", &Value::Null).status(), 200);
    assert_eq!(
        c.call("DELETE", "client/delete", &Value::Null).status(),
        200
    );
    assert_eq!(
        c.call("GET", "facegallery/delete-face", &face("a"))
            .status(),
        400
    );
}

#[test]
fn images_decode_with_data_prefixes_without_padding_and_with_line_breaks() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    c.enroll("door", "amy", "Amy", &photo("amy1.png"));
    let png = photo("amy2.png");
    let jpg = b64(&jpeg(&load("amy2.png")));
    let wrapped = png
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let variants = [
        format!("data:image/png;base64,{png}"),
        format!("data:image/jpeg;base64,{jpg}"),
        format!("data:image/jpg;base64,{jpg}"),
        jpg.clone(),
        png.trim_end_matches('=').to_string(),
        jpg.trim_end_matches('=').to_string(),
        wrapped,
        format!("{}\n", png),
    ];
    assert!(
        png.ends_with('=') || jpg.ends_with('='),
        "one variant must lose its padding"
    );
    for (i, image) in variants.iter().enumerate() {
        let r = c.identify("door", image);
        assert_eq!(r.status(), 200, "variant {i}: {:?}", r.raw);
        assert_eq!(r.body()["return"][0]["user_id"], "amy");
    }
}

#[test]
fn trx_id_may_be_missing_null_constant_a_uuid_or_up_to_120_characters() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    for trx in [
        Value::Null,
        json!("alphanumericalstring1234"),
        json!("alphanumericalstring1234"),
        json!("8c1f5a4e-3b9d-4c57-9a8e-2f1c0d7b6a55"),
        json!("t".repeat(120)),
        json!(12345),
    ] {
        let r = c.post("client/get-counters", json!({"trx_id": trx}));
        assert_eq!(r.status(), 200, "{trx}");
    }
    assert_eq!(c.post("client/get-counters", json!({})).status(), 200);
    assert_eq!(
        c.post("client/get-counters", json!({"trx_id": "t".repeat(121)}))
            .status(),
        400
    );
}

#[test]
fn user_ids_may_be_email_addresses_or_numbers() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("riset.ai@production");
    assert_eq!(
        c.enroll(
            "riset.ai@production",
            "amy.fowler+kiosk@example.com",
            "Amy",
            &photo("amy1.png")
        )
        .status(),
        200
    );
    let r = c.post(
        "facegallery/enroll-face",
        json!({"user_id": 3171012345678901u64, "user_name": "Raj", "facegallery_id": "riset.ai@production", "image": photo("raj1.png")}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(
        c.list_faces("riset.ai@production"),
        ["3171012345678901", "amy.fowler+kiosk@example.com"]
    );
    let r = c.verify(
        "riset.ai@production",
        "amy.fowler+kiosk@example.com",
        &photo("amy2.png"),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
}

#[test]
fn identify_reports_confidence_level_and_mask_as_strings() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    c.enroll("door", "sheldon", "Sheldon", &photo("sheldon1.png"));
    let r = c.identify("door", &photo("sheldon2.png"));
    let hit = &r.body()["return"][0];
    let level = hit["confidence_level"].as_str().expect("a string");
    assert_eq!(
        level.split('.').nth(1).map(str::len),
        Some(6),
        "six decimals like \"0.943697\""
    );
    assert!(matches!(hit["mask"].as_str(), Some("true" | "false")));
    // Other endpoints use JSON numbers and booleans.
    let r = c.verify("door", "sheldon", &photo("sheldon2.png"));
    assert!(r.body()["similarity"].is_number());
    assert!(r.body()["masker"].is_boolean() && r.body()["verified"].is_boolean());
    // The status is the string "200", also usable as a number by loose clients.
    assert_eq!(r.body()["status"], "200");
}

#[test]
fn group_photos_use_the_largest_face() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let r = c.enroll("door", "group", "Largest face", &photo("bbt3.jpg"));
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(
        c.identify("door", &photo("bbt3.jpg")).body()["return"][0]["user_id"],
        "group"
    );
}
