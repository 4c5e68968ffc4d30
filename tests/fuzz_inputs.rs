//! Fuzz-style properties for the two parsers hostile input reaches first: picture
//! decoding and request parsing over real HTTP. Seeded from the cases of issue #15
//! (bombs, truncation, ids over the key limit); the case count is fixed so the target
//! runs in bounded time in CI (`PROPTEST_CASES` raises it for a longer hunt).

#[path = "api_http/support.rs"]
mod support;

use facegate::vision::{decode_image, DecodeError, DecodeLimits};
use proptest::prelude::*;
use serde_json::json;
use support::*;

fn seed_jpeg() -> Vec<u8> {
    jpeg(&load("amy1.png"))
}

fn seed_png() -> Vec<u8> {
    fixture("amy1.png")
}

/// A picture damaged the ways an attacker or a bad link would: cut, cut with an end
/// marker put back, bytes flipped, or its size fields rewritten.
#[derive(Debug, Clone)]
enum Damage {
    Cut(usize),
    CutWithEoi(usize),
    Flip(Vec<(usize, u8)>),
    Size(u16, u16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Cut),
        any::<usize>().prop_map(Damage::CutWithEoi),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8).prop_map(Damage::Flip),
        (any::<u16>(), any::<u16>()).prop_map(|(w, h)| Damage::Size(w, h)),
    ]
}

fn apply(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let len = bytes.len();
    match damage {
        Damage::Cut(at) => bytes.truncate(at % len),
        Damage::CutWithEoi(at) => {
            bytes.truncate(at % len);
            bytes.extend_from_slice(&[0xFF, 0xD9]);
        }
        Damage::Flip(flips) => {
            for (at, value) in flips {
                bytes[at % len] = *value;
            }
        }
        Damage::Size(w, h) => {
            if bytes.starts_with(b"\x89PNG") {
                bytes[16..20].copy_from_slice(&u32::from(*w).to_be_bytes());
                bytes[20..24].copy_from_slice(&u32::from(*h).to_be_bytes());
            } else if let Some(sof) = bytes.windows(2).position(|p| p[0] == 0xFF && p[1] == 0xC0) {
                bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
                bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Never a panic; a damaged picture is an error or a picture within the limits,
    /// and a cut one is never accepted.
    #[test]
    fn damaged_pictures_decode_to_an_error_or_a_bounded_picture(
        png in any::<bool>(),
        damage in damage(),
    ) {
        let seed = if png { seed_png() } else { seed_jpeg() };
        let bytes = apply(seed.clone(), &damage);
        let limits = DecodeLimits::default();
        match decode_image(&bytes, &limits) {
            Ok(image) => {
                let (w, h) = image.dimensions();
                prop_assert!(w <= limits.max_side && h <= limits.max_side);
                prop_assert!(u64::from(w) * u64::from(h) * 3 <= limits.max_decode_bytes);
                let cut = matches!(damage, Damage::Cut(_) | Damage::CutWithEoi(_));
                prop_assert!(!cut || bytes.len() >= seed.len(), "a cut picture was accepted");
            }
            Err(DecodeError::Empty | DecodeError::UnsupportedFormat | DecodeError::Corrupt(_)
                | DecodeError::TooLarge { .. } | DecodeError::TooCostly { .. }) => {}
        }
    }

    /// Arbitrary bytes: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        head in prop_oneof![Just(vec![0xFFu8, 0xD8, 0xFF]), Just(b"\x89PNG\r\n\x1a\n".to_vec())],
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = head;
        bytes.extend_from_slice(&tail);
        let _ = decode_image(&bytes, &DecodeLimits::default());
    }
}

/// Request bodies over real HTTP: any JSON shape, ids of any length and script, and
/// raw bytes. Every answer is a documented status in the envelope, never a 500, and
/// the server keeps serving.
#[test]
fn request_bodies_of_any_shape_get_documented_answers() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let documented = [
        200, 400, 401, 409, 411, 412, 413, 415, 416, 451, 452, 453, 454, 490, 491, 493, 498,
    ];
    let text = prop_oneof![
        "[a-z]{0,200}",
        "\\PC{0,130}",
        Just("🚪".repeat(120)),
        Just("u".repeat(120)),
    ];
    let value = prop_oneof![
        text.clone().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(json!([1, "a"])),
    ];
    let endpoint = prop_oneof![
        Just("facegallery/create-facegallery"),
        Just("facegallery/list-faces"),
        Just("facegallery/delete-face"),
        Just("facegallery/identify-face"),
        Just("facegallery/verify-face"),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(endpoint, value.clone(), value.clone(), value, any::<bool>()),
            |(endpoint, gallery, user, image, raw)| {
                let r = if raw {
                    http(
                        c.addr,
                        "POST",
                        &format!("/face-api/{endpoint}"),
                        &[("Accesstoken", &c.token)],
                        gallery.to_string().as_bytes(),
                    )
                } else {
                    c.post(
                        endpoint,
                        json!({"facegallery_id": gallery, "user_id": user, "image": image}),
                    )
                };
                prop_assert!(documented.contains(&r.status()), "{endpoint}: {:?}", r.raw);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(http(server.addr, "GET", "/healthz", &[], b"").http, 200);
}
