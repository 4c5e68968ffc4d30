//! Malformed and hostile requests never crash the server: each gets a documented
//! answer, and the server keeps serving.

use serde_json::json;

use crate::support::*;

/// A PNG whose header claims `width` x `height` (CRC fixed up), with one tiny IDAT.
fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(&image::RgbImage::new(1, 1));
    // Signature (8) + length (4) + "IHDR" (4), then width and height.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn hostile_requests_get_answers_and_the_server_keeps_serving() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let identify = |image: String| c.identify("door", &image);

    // A PNG header claiming 100000 x 100000 pixels: refused before allocating.
    let r = identify(b64(&png_with_header(100_000, 100_000)));
    assert_eq!(r.status(), 493, "{:?}", r.raw);
    // A header claiming a large but allowed size with no pixel data: broken.
    assert_eq!(identify(b64(&png_with_header(4000, 3000))).status(), 493);
    // Text, HTML and a PDF where a picture should be.
    assert_eq!(identify(b64(b"<html><body>hi</body></html>")).status(), 491);
    assert_eq!(identify(b64(b"%PDF-1.4 ...")).status(), 491);
    // Truncated JPEG (the decoder keeps the rows it got, so this is a picture without
    // a face, or a broken one), JPEG magic only, a single byte.
    let jpg = jpeg(&load("amy1.png"));
    assert!(matches!(
        identify(b64(&jpg[..jpg.len() / 3])).status(),
        412 | 493
    ));
    assert_eq!(identify(b64(&[0xFF, 0xD8, 0xFF])).status(), 493);
    assert_eq!(identify(b64(&[0x00])).status(), 491);
    // Wrong JSON types for every field.
    for body in [
        json!({"facegallery_id": "door", "image": 12345}),
        json!({"facegallery_id": "door", "image": ["a"]}),
        json!({"facegallery_id": "door", "image": {"data": "x"}}),
        json!({"facegallery_id": true, "image": "x"}),
        json!({"facegallery_id": ["door"], "image": "x"}),
    ] {
        let r = c.post("facegallery/identify-face", body.clone());
        assert!(matches!(r.status(), 400 | 490), "{body}: {:?}", r.raw);
    }
    // Huge text fields.
    let huge = "u".repeat(1_000_000);
    let r = c.post(
        "facegallery/enroll-face",
        json!({"user_id": huge, "user_name": "n", "facegallery_id": "door", "image": photo("amy1.png")}),
    );
    assert_eq!(r.status(), 400);
    let r = c.post("client/get-counters", json!({"trx_id": huge}));
    assert_eq!(r.status(), 400);
    // Deeply nested JSON.
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = http(
        server.addr,
        "POST",
        "/face-api/facegallery/list-faces",
        &[("Accesstoken", &c.token)],
        nested.as_bytes(),
    );
    assert_eq!(r.status(), 400);
    // A body that stops before its Content-Length: the server waits, the client gives
    // up; nothing breaks.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        let _ = s.write_all(
            format!("POST /face-api/facegallery/list-faces HTTP/1.1\r\nHost: x\r\nAccesstoken: {}\r\nContent-Length: 1000\r\n\r\n{{\"facegallery_id\":", c.token).as_bytes(),
        );
        drop(s);
    }
    // Garbage instead of HTTP.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        let _ =
            s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n");
        let _ = read_response_or_close(&mut s);
    }
    // Still serving, and recognition still works.
    c.enroll("door", "amy", "Amy", &photo("amy1.png"));
    assert_eq!(c.identify("door", &photo("amy2.png")).status(), 200);
    assert_eq!(http(server.addr, "GET", "/healthz", &[], b"").http, 200);
}

fn read_response_or_close(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_user_id_number_beyond_an_exact_integer_is_refused_not_rounded_into_another_persons() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let enroll = |user_id: serde_json::Value, file: &str| {
        c.post(
            "facegallery/enroll-face",
            json!({"user_id": user_id, "user_name": "n", "facegallery_id": "door", "image": photo(file)}),
        )
    };
    // A NIK-like number is its decimal text.
    let nik: u64 = 3_175_092_505_900_001;
    assert_eq!(enroll(json!(nik), "amy1.png").status(), 200);
    let r = c.post(
        "facegallery/verify-face",
        json!({"user_id": nik.to_string(), "facegallery_id": "door", "image": photo("amy2.png")}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    // Twenty digits arrive as a float: "1e+20" would be the id of every such number.
    let r = http(
        server.addr,
        "POST",
        "/face-api/facegallery/enroll-face",
        &[("Accesstoken", &c.token)],
        format!(
            "{{\"user_id\":99999999999999999998,\"user_name\":\"n\",\"facegallery_id\":\"door\",\"image\":\"{}\"}}",
            photo("sheldon1.png")
        )
        .as_bytes(),
    );
    assert_eq!(r.status(), 400);
    for lossy in [json!(1e2), json!(1.5)] {
        assert_eq!(
            enroll(lossy.clone(), "sheldon1.png").status(),
            400,
            "{lossy}"
        );
    }
}

#[test]
fn a_phone_jpeg_with_data_after_its_end_marker_is_a_picture() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    c.enroll("door", "amy", "Amy", &photo("amy1.png"));
    // A motion photo: the video follows the picture in the same file.
    let mut file = jpeg(&load("amy2.png"));
    file.extend((0..50_000u32).map(|i| (i * 7919 % 251) as u8));
    let r = c.identify("door", &b64(&file));
    assert_eq!(r.status(), 200, "{:?}", r.raw);
}
