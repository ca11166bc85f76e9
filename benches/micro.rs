//! Micro benchmarks of the edge's per-request decisions, each a pure
//! function or an in-memory lookup that runs on every proxied request:
//!
//! * `host/*`: `host::parse_host` on typical names and the worst cases (the
//!   longest label that fits, upper case with a trailing dot and port, and
//!   names that fail and build an error message).
//! * `authorize/*`: the sharing decision, `auth::authorize`.
//! * `cookie/*`: verifying a signed `__Host-berth_app` / `__Host-berth_share` cookie
//!   (HMAC-SHA256), a forged one, and finding it in a `Cookie` header.
//! * `token/*`: hashing a presented API token (SHA-256), as the edge does
//!   before every catalog lookup.
//! * `route/{1k,10k,100k}/*`: the catalog lookups of one request (token to
//!   visitor, host names to agent, share, owner) with 1k, 10k and 100k
//!   agents and shares loaded. A hash-map lookup should cost the same at
//!   every size; a row that grows with the size is a scan.
//! * `revocation/*`: what tracking open connections for revocation adds: a
//!   short response body polled bare and wrapped (the cost every request
//!   pays), registering and releasing an upgraded connection among 10k
//!   tracked ones, and re-checking one.
//!
//! ```text
//! cargo bench --bench micro              # all (~40 s)
//! cargo bench --bench micro -- route     # a filter
//! cargo bench --bench micro -- --test    # run each once (CI smoke)
//! ```
//!
//! Measurement times are short on purpose (0.3 s warm-up, 1 s of samples):
//! these functions take nanoseconds to microseconds, so a second gives a
//! stable median while the suite stays under a minute.

use berth::auth::cookie::{self, CookieKey, Purpose};
use berth::auth::{authorize, LinkGrant, ShareLevel, Target, TokenHash, Visitor};
use berth::catalog::{Agent, Catalog, Change, Share, User, Workspace};
use berth::host::{parse_host, Wildcard};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

fn host(c: &mut Criterion) {
    let dot = Wildcard::parse("*.berth.example.com").expect("valid wildcard");
    let prefix = Wildcard::parse("*--apps.example.com").expect("valid wildcard");
    // The longest label that still fits under the dot wildcard: 63 characters.
    let long_user = "u".repeat(63 - "65535s--".len() - "a--w--".len());
    let longest = format!("65535s--a--w--{long_user}.berth.example.com:443");
    assert_eq!(longest.split('.').next().map(str::len), Some(63));
    let cases: [(&str, &Wildcard, String); 8] = [
        (
            "port",
            &dot,
            "3000--main--dev--alice.berth.example.com".into(),
        ),
        (
            "port_with_port_suffix",
            &dot,
            "3000--main--dev--alice.berth.example.com:8443".into(),
        ),
        (
            "app",
            &dot,
            "web--main--dev--alice.berth.example.com".into(),
        ),
        ("short", &dot, "3000--dev--alice.berth.example.com".into()),
        (
            "prefix_wildcard",
            &prefix,
            "3000s--main--dev--alice--apps.example.com".into(),
        ),
        ("worst_longest_label", &dot, longest),
        (
            "worst_upper_trailing_dot",
            &dot,
            "3000--MAIN--DEV--ALICE.BERTH.EXAMPLE.COM.:443".into(),
        ),
        (
            "error_two_labels",
            &dot,
            "a.b.3000--main--dev--alice.berth.example.com".into(),
        ),
    ];
    let mut g = c.benchmark_group("host");
    for (name, wildcard, h) in &cases {
        let ok = name.starts_with("error");
        assert_eq!(parse_host(h, wildcard).is_err(), ok, "{name}: {h}");
        g.bench_function(*name, |b| b.iter(|| parse_host(black_box(h), wildcard)));
    }
    g.finish();
}

fn decide(c: &mut Criterion) {
    let owner = Visitor {
        user_id: 1,
        username: "alice".into(),
        email: "alice@example.com".into(),
        admin: false,
        organization: Some("acme".into()),
        group_ids: vec![],
    };
    let colleague = Visitor {
        user_id: 2,
        username: "bob".into(),
        email: "bob@example.com".into(),
        admin: false,
        organization: Some("acme".into()),
        group_ids: vec![],
    };
    let target = |level| Target {
        agent_id: 7,
        port: 3000,
        owner_id: 1,
        owner_org: Some("acme"),
        level,
        users: &[],
        groups: &[],
    };
    let owner_only = target(ShareLevel::Owner);
    let org = target(ShareLevel::Organization);
    let link = LinkGrant {
        agent_id: 7,
        port: 3000,
    };
    let mut g = c.benchmark_group("authorize");
    g.bench_function("owner", |b| {
        b.iter(|| authorize(black_box(Some(&owner)), None, black_box(Some(&owner_only))))
    });
    g.bench_function("organization_member", |b| {
        b.iter(|| authorize(black_box(Some(&colleague)), None, black_box(Some(&org))))
    });
    g.bench_function("share_link", |b| {
        b.iter(|| authorize(None, black_box(Some(&link)), black_box(Some(&owner_only))))
    });
    g.bench_function("denied", |b| {
        b.iter(|| {
            authorize(
                black_box(Some(&colleague)),
                None,
                black_box(Some(&owner_only)),
            )
        })
    });
    g.finish();
}

fn cookies(c: &mut Criterion) {
    let key = CookieKey::new([7; 32]);
    let host = "3000--main--dev--alice.berth.example.com";
    let now = 1_800_000_000;
    let session = key.sign(Purpose::Session, "s3ss10n1d", host, now + 3600);
    let share = key.sign(Purpose::Share, "l1nk1d", host, now + 3600);
    let forged = key.sign(
        Purpose::Session,
        "s3ss10n1d",
        "other.example.com",
        now + 3600,
    );
    let header = format!(
        "_ga=GA1.2.3.4; theme=dark; {}={share}; {}={session}",
        cookie::SHARE_COOKIE,
        cookie::APP_COOKIE
    );
    let mut g = c.benchmark_group("cookie");
    g.bench_function("verify_app_session", |b| {
        b.iter(|| key.verify(Purpose::Session, black_box(&session), host, now))
    });
    g.bench_function("verify_share", |b| {
        b.iter(|| key.verify(Purpose::Share, black_box(&share), host, now))
    });
    g.bench_function("verify_forged", |b| {
        b.iter(|| key.verify(Purpose::Session, black_box(&forged), host, now))
    });
    g.bench_function("find_in_header", |b| {
        b.iter(|| cookie::find_all(black_box(&header), cookie::APP_COOKIE).count())
    });
    g.finish();

    let token = "berth_api_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";
    c.bench_function("token/hash_api_token", |b| {
        b.iter(|| TokenHash::of(black_box(token)))
    });
}

/// Signing one `Berth-Jwt-Assertion` (ES256), as every request of a
/// signed-in visitor does.
fn assertion(c: &mut Criterion) {
    use berth::auth::jwt::{Keyring, SigningKey};
    let ring = Keyring::new(
        "https://berth.example.com".into(),
        300,
        vec![SigningKey::generate(1_800_000_000).unwrap()],
    );
    let visitor = berth::auth::Visitor {
        user_id: 7,
        username: "alice".into(),
        email: "alice@example.com".into(),
        admin: false,
        organization: Some("acme".into()),
        group_ids: vec![],
    };
    let host = "3000--main--dev--alice.berth.example.com";
    c.bench_function("jwt/sign_assertion", |b| {
        b.iter(|| ring.assert(black_box(&visitor), &[], host, 1_800_000_000))
    });
}

/// Token of user `i` (what their client sends in `Authorization`).
fn api_token(i: usize) -> String {
    format!("berth_api_{i:043}")
}

/// A catalog like an edge's with `n` users, each with one API token, one
/// workspace `dev` holding one agent `main`, and one shared port: `n` agents
/// and `n` shares in all.
fn catalog(n: usize) -> Catalog {
    let c = Catalog::new();
    for i in 0..n {
        let id = i as i64 + 1;
        c.apply(Change::User(User {
            id,
            username: format!("user{i}"),
            email: format!("user{i}@example.com"),
            admin: false,
            organization: Some(format!("org{}", i % 100)),
        }));
        c.apply(Change::ApiToken {
            hash: TokenHash::of(&api_token(i)),
            user_id: id,
        });
        c.apply(Change::Workspace(Workspace {
            id,
            owner_id: id,
            name: "dev".into(),
        }));
        c.apply(Change::Agent(Agent {
            id,
            workspace_id: id,
            name: "main".into(),
            token_hash: TokenHash::of(&format!("berth_agent_{i:043}")),
        }));
        c.apply(Change::Share(Share {
            agent_id: id,
            port: 3000,
            level: ShareLevel::Organization,
            protocol: Default::default(),
            cors: Default::default(),
            inspect: true,
            users: vec![],
            groups: vec![],
            expires_at: None,
        }));
    }
    c
}

/// The catalog work of one request in the edge's `route` + access phases,
/// for an agent named in full (`3000--main--dev--userN`): resolve the names,
/// read the share, read the owner's organization, and the visitor behind the
/// token hash.
fn lookup(c: &Catalog, user: &str, agent: Option<&str>, token: &TokenHash) -> usize {
    let mut found = 0;
    if let berth::catalog::Resolved::Agent { owner_id, agent_id } = c.resolve(user, "dev", agent) {
        found += c.share(agent_id, 3000).is_some() as usize;
        found += c.user(owner_id).and_then(|u| u.organization).is_some() as usize;
    }
    found + c.visitor_for_token(token).is_some() as usize
}

fn route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    for n in [1_000, 10_000, 100_000] {
        let cat = catalog(n);
        // A user in the middle of the table, so no size favours the first entries.
        let i = n / 2;
        let user = format!("user{i}");
        let token = TokenHash::of(&api_token(i));
        assert_eq!(lookup(&cat, &user, Some("main"), &token), 3);
        let size = format!("{}k", n / 1000);
        g.bench_with_input(BenchmarkId::new(&size, "full_name"), &n, |b, _| {
            b.iter(|| lookup(&cat, black_box(&user), Some("main"), &token))
        });
        g.bench_with_input(BenchmarkId::new(&size, "share_only"), &n, |b, _| {
            b.iter(|| cat.share(black_box(i as i64 + 1), 3000))
        });
        // The short form `3000--dev--userN` names no agent: the catalog
        // looks for the workspace's only agent.
        g.bench_with_input(BenchmarkId::new(&size, "short_name"), &n, |b, _| {
            b.iter(|| lookup(&cat, black_box(&user), None, &token))
        });
    }
    g.finish();
}

fn revocation(c: &mut Criterion) {
    use berth::edge::revocation::{recheck, Admitted, Registry};
    use bytes::Bytes;
    use futures_util::FutureExt;
    use http_body_util::{BodyExt, Full};
    use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
    use std::sync::Arc;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let catalog = Arc::new(catalog(1000));
    let (registry, _watcher) =
        Registry::start(catalog.clone(), Gauge::default(), Counter::default());
    let token = TokenHash::of(&api_token(0));
    let visitor = catalog.visitor_for_token(&token).unwrap();
    let agent_id = match catalog.resolve("user0", "dev", Some("main")) {
        berth::catalog::Resolved::Agent { agent_id, .. } => agent_id,
        other => panic!("{other:?}"),
    };
    let admitted = || Admitted::new(Some(&visitor), Some(token), None, None, agent_id, 3000);
    let held: Vec<_> = (0..10_000).map(|_| registry.hold(admitted())).collect();
    let payload = Bytes::from(vec![b'x'; 1024]);
    let headers = http::HeaderMap::new();
    let mut g = c.benchmark_group("revocation");
    g.bench_function("short_response_plain", |b| {
        b.iter(|| {
            let mut body = Full::new(payload.clone());
            while let Some(Some(f)) = body.frame().now_or_never() {
                black_box(f.unwrap());
            }
        })
    });
    g.bench_function("short_response_watched", |b| {
        b.iter(|| {
            let mut body = registry.body(Full::new(payload.clone()), admitted(), &headers);
            while let Some(Some(f)) = body.frame().now_or_never() {
                black_box(f.unwrap());
            }
        })
    });
    g.bench_function("hold_and_release_among_10k", |b| {
        b.iter(|| drop(black_box(registry.hold(admitted()))))
    });
    let a = admitted();
    g.bench_function("recheck", |b| {
        b.iter(|| recheck(black_box(&a), &catalog, 1_700_000_000))
    });
    g.finish();
    drop(held);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = micro;
    config = config();
    targets = host, decide, cookies, route, revocation, assertion
}
criterion_main!(micro);
