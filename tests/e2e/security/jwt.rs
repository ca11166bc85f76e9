//! Attacks on the identity assertion (`Berth-Jwt-Assertion`): a client
//! sending its own, an assertion forged with another key or with none, and
//! a real one replayed to another app host. Each is checked as the app
//! would check it, against the published JWK set.

use crate::identity::{assertion, jwks, kid, verify};
use crate::support::{apps, Berth};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sent_assertion_never_reaches_the_app() {
    let berth = Berth::start().await;
    let c = berth.client(true);
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/");
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            app.port(),
            json!({"level": "public"}),
        )
        .await;
    // Anonymous, over HTTP/1.1 and HTTP/2: the app gets no assertion at all.
    for http1 in [true, false] {
        let seen: Value = berth
            .client(http1)
            .get(&url)
            .header(
                "Berth-Jwt-Assertion",
                "eyJhbGciOiJub25lIn0.eyJuYW1lIjoiYWRtaW4ifQ.",
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            seen["headers"].get("berth-jwt-assertion").is_none(),
            "{seen}"
        );
    }
    // Signed in: the edge's own, never the client's (nor both).
    let res = c
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .header("Berth-Jwt-Assertion", "forged")
        .send()
        .await
        .unwrap();
    let seen: Value = res.json().await.unwrap();
    let got = seen["headers"]["berth-jwt-assertion"].as_str().unwrap();
    assert_ne!(got, "forged");
    assert!(!got.contains("forged"));
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    verify(
        got,
        &jwks(&c, &berth.api_url("")).await,
        &berth.api_url(""),
        &host,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_assertions_fail_verification() {
    let berth = Berth::start().await;
    let c = berth.client(true);
    let iss = berth.api_url("");
    let (a, b) = (
        apps::start("127.0.0.1:0", "a").await,
        apps::start("127.0.0.1:0", "b").await,
    );
    let host_a = format!("{}--main--dev--admin.berth.localhost", a.port());
    let host_b = format!("{}--main--dev--admin.berth.localhost", b.port());
    let url_a = format!("https://{host_a}:{}/", berth.addr.port());
    let real = assertion(&c, &url_a, &berth.admin_token).await.unwrap();
    let keys = jwks(&c, &iss).await;
    let claims = verify(&real, &keys, &iss, &host_a).unwrap();

    // Replayed: app b (a malicious app, or one that leaked it) presents a's
    // assertion to another app of the same deployment: refused there.
    let e = verify(&real, &keys, &iss, &host_b).unwrap_err();
    assert!(e.contains("Audience"), "{e}");

    // Forged with a key of the attacker's own, under berth's key id.
    let attacker = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid(&real));
    let mut forged_claims = claims.clone();
    forged_claims["name"] = json!("someone-else");
    let forged = jsonwebtoken::encode(
        &h,
        &forged_claims,
        &EncodingKey::from_ec_der(&attacker.serialize_der()),
    )
    .unwrap();
    let e = verify(&forged, &keys, &iss, &host_a).unwrap_err();
    assert!(e.contains("InvalidSignature"), "{e}");

    // The real signature over altered claims.
    let parts: Vec<&str> = real.split('.').collect();
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap()),
        parts[2]
    );
    assert!(verify(&altered, &keys, &iss, &host_a).is_err());

    // No signature at all ("alg": "none"), and an HMAC keyed with the
    // public key (the algorithm confusion attack).
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert!(verify(&none, &keys, &iss, &host_a).is_err());
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid(&real));
    let jwk_json = serde_json::to_vec(&keys.keys[0]).unwrap();
    let confused =
        jsonwebtoken::encode(&hs, &forged_claims, &EncodingKey::from_secret(&jwk_json)).unwrap();
    assert!(verify(&confused, &keys, &iss, &host_a).is_err());
}
