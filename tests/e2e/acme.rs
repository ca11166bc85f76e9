//! Certificates: ACME against a real Pebble with a real BIND for DNS-01
//! (RFC 2136 + TSIG, and the exec hook), renewal, reuse across restarts and
//! replicas, and `files` mode reload under load.

use crate::support::acme::{
    served_chain, tools_available, write_pair, Load, Named, Pebble, Running, KEY_NAME, ZONE,
};
use std::path::Path;
use std::time::{Duration, Instant};

fn acme_toml(pebble: &Pebble, data_dir: &Path, renew_before_days: f64, dns: &str) -> String {
    format!(
        r#"[server]
base_domain = "{ZONE}"
wildcard = "*.{ZONE}"
data_dir = "{data}"

[tls]
mode = "acme"

[tls.acme]
directory = "{dir}"
email = "ops@{ZONE}"
ca_file = "{ca}"
renew_before_days = {renew_before_days}

[tls.acme.dns]
{dns}
"#,
        data = data_dir.display(),
        dir = pebble.directory,
        ca = pebble.https_ca.display(),
    )
}

fn rfc2136(named: &Named) -> String {
    format!(
        "provider = \"rfc2136\"\nserver = \"{}\"\nzone = \"{ZONE}\"\ntsig_key_name = \"{KEY_NAME}\"\ntsig_secret = \"{}\"\npropagation_timeout_secs = 30\n",
        named.addr, named.secret
    )
}

/// Checks what a client sees: a chain that verifies to Pebble's root, with an
/// intermediate, whose leaf covers the base and the wildcard.
async fn check_served(pebble: &Pebble, port: u16) -> berth::tls::info::CertInfo {
    let chain = served_chain(&pebble.root_pem, &format!("abc.{ZONE}"), port)
        .await
        .expect("handshake verifies against Pebble's root");
    assert!(chain.len() >= 2, "the chain includes the intermediate");
    let leaf = berth::tls::info::cert_info(&chain[0]).unwrap();
    assert!(leaf.names.contains(&format!("*.{ZONE}")), "{leaf:?}");
    assert!(leaf.names.contains(&ZONE.to_owned()), "{leaf:?}");
    leaf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_rfc2136_issues_and_replicas_and_restarts_reuse_it() {
    if !tools_available("acme_rfc2136_issues_and_replicas_and_restarts_reuse_it") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let named = Named::start(tmp.path()).await;
    let pebble = Pebble::start(tmp.path(), named.addr, None).await;
    let data = tmp.path().join("data");
    let toml = acme_toml(&pebble, &data, 30.0, &rfc2136(&named));

    let started = Instant::now();
    let a = Running::start(&toml, &data).await;
    // A second replica on the same store while the first is ordering: it
    // must wait for the lease and pick the same certificate up.
    let b = Running::start(&toml, &data).await;
    let issued = a.wait_issued(Duration::from_secs(90)).await;
    println!("first certificate after {:?}", started.elapsed());
    let served = check_served(&pebble, a.addr.port()).await;
    assert_eq!(served.serial, issued.serial);
    let b_leaf = b.wait_issued(Duration::from_secs(30)).await;
    assert_eq!(
        b_leaf.serial, issued.serial,
        "replicas share one certificate"
    );

    // A page on an app host, over verified TLS.
    let res = Load::start(
        &pebble.root_pem,
        format!("https://abc.{ZONE}:{}/", a.addr.port()),
        1,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, errors) = res.finish().await;
    assert!(ok > 0 && failed == 0, "ok={ok} failed={failed} {errors:?}");

    // The expiry gauge.
    let metrics = reqwest::get(format!("http://{}/metrics", a.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("berth_tls_certificate_expiry_seconds"))
        .expect("expiry gauge");
    let secs: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 86_400, "{line}");

    // `berth certs status` reads the store, also while servers run.
    let status = berth::tls::status::collect(None, Some(&data))
        .await
        .unwrap();
    let acme: Vec<_> = status.iter().filter(|c| c.source == "acme").collect();
    assert_eq!(acme.len(), 1, "{status:?}");
    assert_eq!(acme[0].serial, issued.serial);
    assert!(acme[0].next_renewal.is_some());
    println!("{}", berth::tls::status::render(&status));

    a.stop().await;
    b.stop().await;
    // A restart serves the stored certificate from the first handshake and
    // orders nothing while it is valid.
    let c = Running::start(&toml, &data).await;
    assert_eq!(
        c.leaf().serial,
        issued.serial,
        "served at once after restart"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        check_served(&pebble, c.addr.port()).await.serial,
        issued.serial
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_exec_hook_issues_through_the_operators_script() {
    if !tools_available("acme_exec_hook_issues_through_the_operators_script") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let named = Named::start(tmp.path()).await;
    let pebble = Pebble::start(tmp.path(), named.addr, None).await;
    let data = tmp.path().join("data");
    let hook = tmp.path().join("dns-hook");
    let calls = tmp.path().join("hook-calls");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
set -e
case "$1" in present) op=add ;; cleanup) op=delete ;; *) echo "unknown action $1" >&2; exit 2 ;; esac
echo "$1 $2" >> {calls}
printf 'server 127.0.0.1 {port}\nzone {ZONE}\nupdate %s %s 60 TXT "%s"\nsend\n' "$op" "$2" "$3" | nsupdate -y {key}
"#,
            calls = calls.display(),
            port = named.addr.port(),
            key = named.nsupdate_key(),
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dns = format!(
        "provider = \"exec\"\ncommand = \"{}\"\nresolvers = [\"{}\"]\n",
        hook.display(),
        named.addr
    );
    let toml = acme_toml(&pebble, &data, 30.0, &dns);
    let started = Instant::now();
    let a = Running::start(&toml, &data).await;
    let issued = a.wait_issued(Duration::from_secs(90)).await;
    println!(
        "first certificate (exec hook) after {:?}",
        started.elapsed()
    );
    assert_eq!(
        check_served(&pebble, a.addr.port()).await.serial,
        issued.serial
    );
    // Without tls.acme.dns.resolvers, an exec set-up checks the zone's
    // authoritative servers, found by NS and A lookups (here through BIND).
    let found = berth::tls::acme::dns::authoritative_servers(
        &format!("_acme-challenge.{ZONE}."),
        &[named.addr],
        named.addr.port(),
    )
    .await
    .unwrap();
    assert_eq!(found, vec![named.addr]);
    let calls = std::fs::read_to_string(&calls).unwrap();
    let fqdn = format!("_acme-challenge.{ZONE}.");
    assert_eq!(
        calls
            .lines()
            .filter(|l| *l == format!("present {fqdn}"))
            .count(),
        2,
        "one TXT value for the base name, one for the wildcard: {calls}"
    );
    assert_eq!(
        calls
            .lines()
            .filter(|l| *l == format!("cleanup {fqdn}"))
            .count(),
        2,
        "{calls}"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_renewal_swaps_the_certificate_without_failed_requests() {
    if !tools_available("acme_renewal_swaps_the_certificate_without_failed_requests") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let named = Named::start(tmp.path()).await;
    // 40-second certificates renewed 30 s before expiry: a renewal ~10 s
    // after each issuance.
    let pebble = Pebble::start(tmp.path(), named.addr, Some(40)).await;
    let data = tmp.path().join("data");
    let toml = acme_toml(&pebble, &data, 30.0 / 86_400.0, &rfc2136(&named));
    let a = Running::start(&toml, &data).await;
    let first = a.wait_issued(Duration::from_secs(90)).await;
    let load = Load::start(
        &pebble.root_pem,
        format!("https://abc.{ZONE}:{}/", a.addr.port()),
        4,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let leaf = check_served(&pebble, a.addr.port()).await;
        if leaf.serial != first.serial {
            break leaf;
        }
        assert!(Instant::now() < deadline, "not renewed within 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed, errors) = load.finish().await;
    assert!(renewed.not_after > first.not_after);
    assert!(ok > 20, "requests kept flowing: {ok}");
    assert_eq!(failed, 0, "no failed request during renewal: {errors:?}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_mode_reloads_changed_files_under_load_and_keeps_a_good_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = berth::tls::LocalCa::load_or_create(&tmp.path().join("ca")).unwrap();
    let names = vec![ZONE.to_owned(), format!("*.{ZONE}")];
    let (cert, key) = (
        tmp.path().join("fullchain.pem"),
        tmp.path().join("privkey.pem"),
    );
    write_pair(&ca.issue(&names).unwrap(), &cert, &key);
    let data = tmp.path().join("data");
    let toml = format!(
        "[server]\nbase_domain = \"{ZONE}\"\nwildcard = \"*.{ZONE}\"\ndata_dir = \"{}\"\n[tls]\nmode = \"files\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        data.display(),
        cert.display(),
        key.display()
    );
    let a = Running::start(&toml, &data).await;
    let serial = |chain: Vec<rustls_pki_types::CertificateDer<'static>>| {
        berth::tls::info::cert_info(&chain[0]).unwrap().serial
    };
    let first = serial(
        served_chain(ca.cert_path(), &format!("x.{ZONE}"), a.addr.port())
            .await
            .unwrap(),
    );
    let load = Load::start(
        ca.cert_path(),
        format!("https://x.{ZONE}:{}/", a.addr.port()),
        4,
    );

    // The way certbot and cert-manager replace files: new content renamed in.
    let next = ca.issue(&names).unwrap();
    let (tc, tk) = (tmp.path().join("c.tmp"), tmp.path().join("k.tmp"));
    write_pair(&next, &tc, &tk);
    std::fs::rename(&tk, &key).unwrap();
    std::fs::rename(&tc, &cert).unwrap();
    let want = berth::tls::info::cert_info(&next.chain[0]).unwrap().serial;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = serial(
            served_chain(ca.cert_path(), &format!("x.{ZONE}"), a.addr.port())
                .await
                .unwrap(),
        );
        if now == want {
            break;
        }
        assert_eq!(now, first, "only the old or the new certificate is served");
        assert!(Instant::now() < deadline, "not reloaded within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken replacement (a key that belongs to another certificate) is
    // refused; the good certificate stays.
    let other = ca.issue(&names).unwrap();
    std::fs::write(
        &key,
        crate::support::acme::pem_block("PRIVATE KEY", other.key.secret_der()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = serial(
        served_chain(ca.cert_path(), &format!("x.{ZONE}"), a.addr.port())
            .await
            .unwrap(),
    );
    assert_eq!(now, want, "a mismatched pair is not served");

    let (ok, failed, errors) = load.finish().await;
    assert!(ok > 20, "requests kept flowing: {ok}");
    assert_eq!(
        failed, 0,
        "no failed request while files changed: {errors:?}"
    );

    // `berth certs status --config` reads the files the config names.
    let config = tmp.path().join("files.toml");
    std::fs::write(&config, &toml).unwrap();
    let status = berth::tls::status::collect(Some(&config), None)
        .await
        .unwrap();
    let files: Vec<_> = status.iter().filter(|c| c.source == "files").collect();
    assert_eq!(files.len(), 1, "{status:?}");
    assert_eq!(files[0].serial, want);
    assert!(files[0].names.contains(&format!("*.{ZONE}")));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_ca_refusal_keeps_the_server_up_and_reports_the_cas_message() {
    if !tools_available("acme_ca_refusal_keeps_the_server_up_and_reports_the_cas_message") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let named = Named::start(tmp.path()).await;
    let pebble = Pebble::start_with(tmp.path(), named.addr, None, &[ZONE]).await;
    let data = tmp.path().join("data");
    let toml = acme_toml(&pebble, &data, 30.0, &rfc2136(&named));
    let a = Running::start(&toml, &data).await;
    let manager = a.acme.clone().expect("acme mode has a manager");
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        if let Some(e) = manager.last_error() {
            break e;
        }
        assert!(Instant::now() < deadline, "no error reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains(&pebble.directory), "{error}");
    assert!(
        error.contains("rejectedIdentifier"),
        "the CA's own problem type: {error}"
    );
    // A second replica does not ask the CA while the first backs off: the
    // lease is held through the back-off.
    let b = Running::start(&toml, &data).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b_error = b.acme.as_ref().unwrap().last_error();
    assert_eq!(b_error, None, "the second replica waited for the lease");
    assert!(b.leaf().issuer.contains("temporary"));
    b.stop().await;
    // Still up, serving the temporary certificate.
    assert!(a.leaf().issuer.contains("temporary"));
    assert!(
        served_chain(&pebble.root_pem, &format!("abc.{ZONE}"), a.addr.port())
            .await
            .is_err(),
        "the temporary certificate does not verify"
    );
    a.stop().await;
}

/// Control in `acme` mode orders each region's certificate (its host and
/// wildcard) for the region's edges, which have neither a database nor DNS
/// credentials: `GET /api/v1/edge/certificate` says "pending" (503) while
/// the order runs, then hands out the issued chain and key, the same one on
/// every later call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acme_control_orders_each_regions_certificate_for_its_edges() {
    if !tools_available("acme_control_orders_each_regions_certificate_for_its_edges") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let named = Named::start(tmp.path()).await;
    let pebble = Pebble::start(tmp.path(), named.addr, None).await;
    let data = tmp.path().join("data");
    let control = Running::start(&acme_toml(&pebble, &data, 30.0, &rfc2136(&named)), &data).await;
    control.wait_issued(Duration::from_secs(90)).await;
    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let root = reqwest::Certificate::from_pem(&std::fs::read(&pebble.root_pem).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(ZONE, control.addr)
        .build()
        .unwrap();
    let api = |path: &str| format!("https://{ZONE}:{}/api/v1{path}", control.addr.port());
    let res = c
        .post(api("/regions"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "name": "eu",
            "url": format!("https://eu.{ZONE}:9443"),
            "wildcard": format!("*.eu.{ZONE}"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token = res.json::<serde_json::Value>().await.unwrap()["region_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask = || {
        let req = c.get(api("/edge/certificate")).bearer_auth(&token);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = ask().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "certificate_pending", "{body}");
    let started = Instant::now();
    let body = loop {
        let (status, body) = ask().await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(started.elapsed() < Duration::from_secs(90), "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "the region's certificate was ready {:?} after the edge first asked",
        started.elapsed()
    );
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let chain: Vec<_> = body["chain"].as_array().unwrap().iter().map(b64).collect();
    assert!(chain.len() >= 2, "the chain includes the intermediate");
    let leaf = berth::tls::info::cert_info(&chain[0]).unwrap();
    assert!(leaf.names.contains(&format!("eu.{ZONE}")), "{leaf:?}");
    assert!(leaf.names.contains(&format!("*.eu.{ZONE}")), "{leaf:?}");
    assert!(leaf.issuer.contains("Pebble"), "{leaf:?}");
    // The key belongs to the leaf: an edge can serve the pair.
    let pair = berth::tls::CertAndKey {
        chain: chain.iter().map(|d| d.clone().into()).collect(),
        key: rustls_pki_types::PrivateKeyDer::Pkcs8(b64(&body["key"]).into()),
    };
    berth::tls::SwappableCert::new(pair).expect("the chain and key make a usable pair");
    // Asked again: the stored certificate, not a new order.
    let (status, again) = ask().await;
    assert_eq!(status, 200);
    assert_eq!(again["chain"], body["chain"]);
    control.stop().await;
}
