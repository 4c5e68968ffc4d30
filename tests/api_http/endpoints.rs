//! Every endpoint's success path, enrollment semantics, isolation between clients,
//! quotas, tokens, and the operational endpoints.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn every_endpoint_answers_its_documented_success() {
    let server = TestServer::start();
    let c = server.client("riset.ai");

    let r = c.post("client/register", Value::Null);
    assert_eq!((r.http, r.status()), (200, 200), "{:?}", r.raw);
    assert_eq!(r.body()["facegallery_id"], "riset.ai@trial");
    assert_eq!(r.body()["status"], "200");
    assert!(
        r.raw.get("risetai").is_some(),
        "risetai envelope by default"
    );

    let r = c.create_gallery("riset.ai@production");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body()["facegallery_id"], "riset.ai@production");

    let r = c.call("GET", "facegallery/my-facegalleries", &Value::Null);
    assert_eq!(r.status(), 200);
    assert_eq!(r.body()["status_message"], "Success - FaceGalleries Listed");
    assert_eq!(
        r.body()["facegallery_id"],
        json!(["riset.ai@production", "riset.ai@trial"])
    );

    let g = "riset.ai@production";
    let r = c.post(
        "facegallery/enroll-face",
        json!({"user_id": "amy", "user_name": "Amy", "facegallery_id": g,
               "force_register": false, "image": photo("amy1.png"), "trx_id": "t1"}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(r.body()["status_message"], "Success");
    assert_eq!(
        c.enroll(g, "sheldon", "Sheldon", &photo("sheldon1.png"))
            .status(),
        200
    );

    let r = c.post(
        "facegallery/enroll-face-ktp",
        json!({"user_id": "penny", "user_name": "Penny", "facegallery_id": g,
               "image": b64(&ktp_photo("penny1.png", "penny1.png")), "trx_id": "t2"}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(r.body()["masker"], false);
    assert!(r.body()["similarity"].as_f64().unwrap() >= 0.75);

    assert_eq!(c.list_faces(g), ["amy", "penny", "sheldon"]);
    let r = c.post("facegallery/list-faces", json!({"facegallery_id": g}));
    let amy = r.body()["faces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["user_id"] == "amy")
        .cloned();
    assert_eq!(amy.unwrap()["user_name"], "Amy");

    let r = c.verify(g, "amy", &photo("amy2.png"));
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(r.body()["user_name"], "Amy");
    assert_eq!(r.body()["verified"], true);
    assert_eq!(r.body()["masker"], false);
    assert!(r.body()["similarity"].as_f64().unwrap() >= 0.75);

    let r = c.identify(g, &photo("amy2.png"));
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(r.body()["status_description"], "Face Recognition Success");
    let hit = &r.body()["return"][0];
    assert_eq!(hit["user_id"], "amy");
    assert_eq!(hit["user_name"], "Amy");
    assert_eq!(hit["mask"], "false");
    let confidence: f64 = hit["confidence_level"].as_str().unwrap().parse().unwrap();
    assert!((0.75..=1.0).contains(&confidence));

    let r = c.post(
        "compare-images",
        json!({"source_image": photo("sheldon2.png"), "target_image": photo("sheldon1.png"), "trx_id": "t3"}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(r.body()["verified"], true);
    assert_eq!(r.body()["masker"], false);

    let r = c.call("GET", "client/get-counters", &json!({"trx_id": "t4"}));
    assert_eq!(r.status(), 200);
    let left = &r.body()["remaining_limit"];
    assert!(
        left["n_api_hits"].is_u64() && left["n_face"].is_u64() && left["n_facegallery"].is_u64()
    );

    let r = c.call(
        "DELETE",
        "facegallery/delete-face",
        &json!({"user_id": "amy", "facegallery_id": g}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(c.list_faces(g), ["penny", "sheldon"]);
    let r = c.identify(g, &photo("amy2.png"));
    assert_ne!(r.body()["return"][0]["user_id"], "amy", "{:?}", r.raw);

    let r = c.call(
        "DELETE",
        "facegallery/delete-facegallery",
        &json!({"facegallery_id": g}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.body()["facegallery_id"], g);

    let r = c.call("DELETE", "client/delete", &Value::Null);
    assert_eq!(r.status(), 200);
    assert_eq!(r.body()["facegallery_id"], json!(["riset.ai@trial"]));
    let r = c.call("GET", "facegallery/my-facegalleries", &Value::Null);
    assert_eq!(r.body()["facegallery_id"], json!([]));
}

#[test]
fn identify_returns_411_for_an_unenrolled_person() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    assert_eq!(
        c.enroll("door", "amy", "Amy", &photo("amy1.png")).status(),
        200
    );
    assert_eq!(
        c.enroll("door", "sheldon", "Sheldon", &photo("sheldon1.png"))
            .status(),
        200
    );
    let r = c.identify("door", &photo("penny1.png"));
    assert_eq!((r.http, r.status()), (411, 411), "{:?}", r.raw);
    assert_eq!(r.body()["return"], json!([]));
    // An empty gallery has no match either.
    c.create_gallery("empty");
    assert_eq!(c.identify("empty", &photo("penny1.png")).status(), 411);
}

#[test]
fn verify_returns_411_for_another_person_and_names_the_claimed_user() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    c.enroll("door", "amy", "Amy", &photo("amy1.png"));
    let r = c.verify("door", "amy", &photo("leonard1.png"));
    assert_eq!(r.status(), 411, "{:?}", r.raw);
    assert_eq!(r.body()["verified"], false);
    assert_eq!(r.body()["user_name"], "Amy");
    assert!(r.body()["similarity"].as_f64().unwrap() < 0.75);
}

#[test]
fn enrolling_an_existing_user_adds_a_template_up_to_the_cap_and_renames() {
    let server = TestServer::start_with(|c| c.store.max_templates_per_user = 2);
    let c = server.client("kiosk");
    c.create_gallery("door");
    for (photo_name, name) in [
        ("amy1.png", "Amy"),
        ("amy2.png", "Amy F."),
        ("amy3.png", "Amy Farrah Fowler"),
    ] {
        assert_eq!(
            c.enroll("door", "amy", name, &photo(photo_name)).status(),
            200
        );
    }
    let r = c.post("facegallery/list-faces", json!({"facegallery_id": "door"}));
    assert_eq!(
        r.body()["faces"],
        json!([{"user_id": "amy", "user_name": "Amy Farrah Fowler"}])
    );
    let templates = server
        .gallery
        .read_store(|r| r.templates_of("kiosk", "door", "amy"))
        .unwrap();
    assert_eq!(templates.len(), 2, "capped at store.max_templates_per_user");
    assert!(
        templates.iter().all(|(_, t)| t.crop_jpeg.is_some()),
        "crops kept by default"
    );
    assert_eq!(server.gallery.indexed_templates(), 2);
    // One person counts once against the faces quota.
    let r = c.post("client/get-counters", json!({}));
    assert_eq!(
        server.gallery.accounts().list_clients().unwrap()[0].faces,
        1,
        "{:?}",
        r.raw
    );
}

#[test]
fn crops_are_not_stored_when_keep_crops_is_off() {
    let server = TestServer::start_with(|c| c.store.keep_crops = false);
    let c = server.client("kiosk");
    c.create_gallery("door");
    assert_eq!(
        c.enroll("door", "amy", "Amy", &photo("amy1.png")).status(),
        200
    );
    let templates = server
        .gallery
        .read_store(|r| r.templates_of("kiosk", "door", "amy"))
        .unwrap();
    assert!(templates[0].1.crop_jpeg.is_none());
}

#[test]
fn enroll_refuses_a_small_face_with_413_unless_forced() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let small = b64(&small_face("amy1.png"));
    let r = c.enroll("door", "amy", "Amy", &small);
    assert_eq!(r.status(), 413, "{:?}", r.raw);
    assert!(c.list_faces("door").is_empty());
    let r = c.post(
        "facegallery/enroll-face",
        json!({"user_id": "amy", "user_name": "Amy", "facegallery_id": "door", "image": small, "force_register": true}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(c.list_faces("door"), ["amy"]);
}

#[test]
fn enroll_ktp_refuses_a_card_of_another_person_and_stores_nothing() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    let r = c.post(
        "facegallery/enroll-face-ktp",
        json!({"user_id": "3171", "user_name": "Howard", "facegallery_id": "door",
               "image": b64(&ktp_photo("howard1.png", "raj1.png"))}),
    );
    assert_eq!(r.status(), 411, "{:?}", r.raw);
    assert!(r.body()["similarity"].as_f64().unwrap() < 0.75);
    assert!(c.list_faces("door").is_empty());
    // The same person's card passes; a stricter minimum_similarity than reachable refuses.
    let same = b64(&ktp_photo("howard1.png", "howard2.png"));
    let r = c.post(
        "facegallery/enroll-face-ktp",
        json!({"user_id": "3171", "user_name": "Howard", "facegallery_id": "door", "image": same, "minimum_similarity": 1.0}),
    );
    assert_eq!(r.status(), 411, "{:?}", r.raw);
    let r = c.post(
        "facegallery/enroll-face-ktp",
        json!({"user_id": "3171", "user_name": "Howard", "facegallery_id": "door", "image": same, "minimum_similarity": 0.6}),
    );
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    assert_eq!(c.list_faces("door"), ["3171"]);
    // A picture with one face has no card: 412.
    let r = c.post(
        "facegallery/enroll-face-ktp",
        json!({"user_id": "1", "user_name": "X", "facegallery_id": "door", "image": photo("amy1.png")}),
    );
    assert_eq!(r.status(), 412, "{:?}", r.raw);
}

#[test]
fn another_clients_gallery_is_416_and_never_listed() {
    let server = TestServer::start();
    let a = server.client("alpha");
    let b = server.client("beta");
    a.create_gallery("shared-name");
    a.enroll("shared-name", "amy", "Amy", &photo("amy1.png"));
    let g = json!({"facegallery_id": "shared-name"});
    assert_eq!(b.post("facegallery/list-faces", g.clone()).status(), 416);
    assert_eq!(b.identify("shared-name", &photo("amy2.png")).status(), 416);
    assert_eq!(
        b.verify("shared-name", "amy", &photo("amy2.png")).status(),
        416
    );
    assert_eq!(
        b.enroll("shared-name", "x", "X", &photo("penny1.png"))
            .status(),
        416
    );
    assert_eq!(
        b.post(
            "facegallery/delete-face",
            json!({"facegallery_id": "shared-name", "user_id": "amy"})
        )
        .status(),
        416
    );
    assert_eq!(
        b.post("facegallery/delete-facegallery", g.clone()).status(),
        416
    );
    let r = b.post("facegallery/my-facegalleries", Value::Null);
    assert_eq!(r.body()["facegallery_id"], json!([]));
    // The same name is free for beta and stays separate.
    assert_eq!(b.create_gallery("shared-name").status(), 200);
    assert_eq!(b.identify("shared-name", &photo("amy2.png")).status(), 411);
    assert_eq!(a.identify("shared-name", &photo("amy2.png")).status(), 200);
    assert_eq!(b.post("client/delete", Value::Null).status(), 200);
    assert_eq!(a.list_faces("shared-name"), ["amy"]);
}

#[test]
fn exhausted_quotas_answer_403_and_get_counters_reports_what_remains() {
    let server = TestServer::start_with(|c| {
        c.quota.api_hits = 8;
        c.quota.faces = 1;
        c.quota.galleries = 1;
    });
    let c = server.client("kiosk");
    let counters =
        |c: &Client| c.post("client/get-counters", json!({})).body()["remaining_limit"].clone();
    assert_eq!(
        counters(&c),
        json!({"n_api_hits": 7, "n_face": 1, "n_facegallery": 1})
    );
    assert_eq!(c.create_gallery("one").status(), 200); // hit 2
    assert_eq!(c.create_gallery("two").status(), 403); // hit 3
    assert_eq!(
        c.enroll("one", "amy", "Amy", &photo("amy1.png")).status(),
        200
    ); // 4
    assert_eq!(
        c.enroll("one", "raj", "Raj", &photo("raj1.png")).status(),
        403
    ); // 5
       // Another template for an enrolled user is not a new face.
    assert_eq!(
        c.enroll("one", "amy", "Amy", &photo("amy2.png")).status(),
        200
    ); // 6
    assert_eq!(
        counters(&c),
        json!({"n_api_hits": 1, "n_face": 0, "n_facegallery": 0})
    ); // 7
    assert_eq!(
        c.post("facegallery/my-facegalleries", Value::Null).status(),
        200
    ); // 8
    let r = c.post("facegallery/my-facegalleries", Value::Null);
    assert_eq!((r.http, r.status()), (403, 403));
}

#[test]
fn unlimited_quotas_are_reported_as_a_large_positive_number() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    let r = c.post("client/get-counters", json!({}));
    let big = facegate::gallery::UNLIMITED_REPORTED;
    assert_eq!(
        r.body()["remaining_limit"],
        json!({"n_api_hits": big, "n_face": big, "n_facegallery": big})
    );
}

#[test]
fn oauth_endpoints_issue_a_new_token_per_call_and_revoke_it() {
    let server = TestServer::start();
    server
        .gallery
        .accounts()
        .add_client("app", Some("pa ss&word"))
        .unwrap();
    let form = "client_id=app&password=pa+ss%26word";
    let form_header = [("Content-Type", "application/x-www-form-urlencoded")];
    let first = http(
        server.addr,
        "POST",
        "/oauth/client/token",
        &form_header,
        form.as_bytes(),
    );
    let second = http(
        server.addr,
        "POST",
        "/oauth/client/token",
        &form_header,
        form.as_bytes(),
    );
    assert_eq!(first.http, 200, "{:?}", first.raw);
    let t1 = first.raw["access_token"].as_str().unwrap().to_string();
    let t2 = second.raw["access_token"].as_str().unwrap().to_string();
    assert_ne!(t1, t2);
    let c = Client {
        addr: server.addr,
        token: t1.clone(),
        prefix: "/face-api".into(),
    };
    assert_eq!(c.post("client/register", Value::Null).status(), 200);
    let wrong = http(
        server.addr,
        "POST",
        "/oauth/client/token",
        &form_header,
        b"client_id=app&password=nope",
    );
    assert_eq!(wrong.http, 401);
    let revoke = http(
        server.addr,
        "POST",
        "/oauth/token/revoke",
        &[form_header[0], ("Accesstoken", &t1)],
        form.as_bytes(),
    );
    assert_eq!(revoke.http, 200, "{:?}", revoke.raw);
    assert_eq!(c.post("client/register", Value::Null).status(), 401);
    let c2 = Client { token: t2, ..c };
    assert_eq!(c2.post("client/register", Value::Null).status(), 200);
}

#[test]
fn healthz_metrics_and_openapi_answer() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.post("client/register", Value::Null);
    let h = http(server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(h.http, 200);
    assert_eq!(h.raw["status"], "ok");
    let m = http(server.addr, "GET", "/metrics", &[], b"");
    assert_eq!(m.http, 200);
    let text = m.raw.as_str().unwrap();
    assert!(
        text.contains("facegate_requests_total{endpoint=\"client/register\",status=\"200\"} 1"),
        "{text}"
    );
    // The test pipeline's 2 sessions and the default queue of 64.
    assert!(text.contains("facegate_inference_slots 66"), "{text}");
    assert_eq!(h.raw["inference"]["sessions"], 2);
    let o = http(server.addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(o.raw["openapi"], "3.0.3");
    let paths = o.raw["paths"].as_object().unwrap();
    assert!(paths.contains_key("/face-api/facegallery/identify-face"));
    assert!(paths.contains_key("/risetai/face-api/facegallery/list-faces"));
    assert!(paths["/face-api/facegallery/list-faces"]
        .get("get")
        .is_some());
}

#[test]
fn identify_with_max_results_lists_each_matching_user_once_best_first() {
    let server = TestServer::start();
    let c = server.client("kiosk");
    c.create_gallery("door");
    // The same person enrolled twice under two ids (a duplicate registration), with two
    // photos for the first id; and someone else.
    for (user, file) in [
        ("amy", "amy1.png"),
        ("amy", "amy3.png"),
        ("amy-again", "amy3.png"),
        ("sheldon", "sheldon1.png"),
    ] {
        let r = c.enroll("door", user, user, &photo(file));
        assert_eq!(r.status(), 200, "{:?}", r.raw);
    }
    let identify = |max: Value| {
        c.post(
            "facegallery/identify-face",
            json!({"facegallery_id": "door", "image": photo("amy2.png"), "max_results": max}),
        )
    };
    let r = identify(json!(5));
    assert_eq!(r.status(), 200, "{:?}", r.raw);
    let hits = r.body()["return"].as_array().unwrap().clone();
    let users: Vec<&str> = hits
        .iter()
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    // Both of Amy's ids, each once; Sheldon is below the threshold.
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(sorted, ["amy", "amy-again"], "{:?}", r.raw);
    let confidence = |h: &Value| {
        h["confidence_level"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(confidence(&hits[0]) >= confidence(&hits[1]));
    // max_results 1 (and the default) gives the best of them alone.
    for r in [
        identify(json!(1)),
        identify(json!("1")),
        c.identify("door", &photo("amy2.png")),
    ] {
        assert_eq!(r.status(), 200, "{:?}", r.raw);
        assert_eq!(r.body()["return"].as_array().unwrap().len(), 1);
        assert_eq!(r.body()["return"][0]["user_id"], users[0]);
    }
    assert_eq!(
        identify(json!("2")).body()["return"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Not a whole number within 1..=100: 400, nothing searched.
    for bad in [
        json!(0),
        json!(-1),
        json!(101),
        json!(1.5),
        json!("two"),
        json!(true),
        json!([2]),
        json!({"n": 2}),
        json!(u64::MAX),
    ] {
        let r = identify(bad.clone());
        assert_eq!(r.status(), 400, "max_results {bad}: {:?}", r.raw);
    }
    // A person not enrolled: 411 with an empty list, whatever max_results.
    let r = c.post(
        "facegallery/identify-face",
        json!({"facegallery_id": "door", "image": photo("penny1.png"), "max_results": 10}),
    );
    assert_eq!(r.status(), 411, "{:?}", r.raw);
    assert_eq!(r.body()["return"], json!([]));
}
