//! The data directory: a clean stop leaves `berth.db` whole and private, and
//! a lost database is not silently replaced by a new deployment that
//! overwrites the old one's tokens and CA.

use super::dev_process::{command, DevProcess};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// The files an earlier deployment leaves, with their contents.
const DEPLOYMENT_FILES: [&str; 4] = ["admin-token", "dev-agent-token", "ca.pem", "ca-key.pem"];

fn contents(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    DEPLOYMENT_FILES
        .iter()
        .map(|f| (*f, std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

fn mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_the_database_whole_in_berth_db_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dev = DevProcess::start(&dir, None).await;
    let res = dev
        .client()
        .post(dev.url("/api/v1/users"))
        .bearer_auth(dev.admin_token())
        .json(&json!({"username": "carol", "email": "carol@example.com", "password": "carol-password", "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let db = dir.join("berth.db");
    assert_eq!(mode(&db), Some(0o600), "while running");
    // Another program has the database open (a backup tool, a shell): then
    // closing berth's own connections does not checkpoint by itself.
    let watcher = berth::store::Store::open_url(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (status, err) = dev.stop().await;
    assert!(status.success(), "{status}\n{err}");

    // The write-ahead log was checkpointed: empty or gone.
    let wal = std::fs::metadata(dir.join("berth.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "berth.db-wal after a clean stop");
    for f in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        if let Some(m) = mode(&dir.join(f)) {
            assert_eq!(m, 0o600, "{f}: {m:o}");
        }
    }
    // berth.db alone holds everything.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&db, copy.path().join("berth.db")).unwrap();
    let store = berth::store::Store::open(copy.path()).await.unwrap();
    let users: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(users, ["admin", "carol"]);
    drop(watcher);
}

/// Runs `berth dev` on `dir`, which must refuse to start; returns stderr.
async fn refused_start(dir: &Path) -> String {
    let (mut cmd, _, _) = command(dir, None);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("berth dev did not exit")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "berth dev started:\n{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_refused_and_the_old_files_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (status, err) = DevProcess::start(&dir, None).await.stop().await;
    assert!(status.success(), "{err}");
    let kept = contents(&dir);
    let db = dir.join("berth.db");

    // 1. berth.db deleted: refused, and no new database is made.
    std::fs::remove_file(&db).unwrap();
    let _ = std::fs::remove_file(dir.join("berth.db-wal"));
    let _ = std::fs::remove_file(dir.join("berth.db-shm"));
    let err = refused_start(&dir).await;
    for name in DEPLOYMENT_FILES {
        assert!(err.contains(name), "names {name}: {err}");
    }
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(
        err.contains("restore it from a backup") && err.contains("remove"),
        "{err}"
    );
    assert_eq!(contents(&dir), kept, "files unchanged");
    assert!(!db.exists(), "no new database");

    // 2. berth.db without its write-ahead log: the schema is there, the
    // users were only in the lost berth.db-wal. Refused the same way.
    let other = tempfile::tempdir().unwrap();
    let empty = berth::store::Store::open(other.path()).await.unwrap();
    empty.close().await.unwrap();
    std::fs::copy(other.path().join("berth.db"), &db).unwrap();
    let err = refused_start(&dir).await;
    assert!(err.contains("has no users"), "{err}");
    assert_eq!(contents(&dir), kept, "files unchanged");

    // 3. Doing what the message says to start over works.
    for f in DEPLOYMENT_FILES {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let dev = DevProcess::start(&dir, None).await;
    assert_ne!(dev.admin_token().as_bytes(), kept["admin-token"].as_slice());
    let (status, err) = dev.stop().await;
    assert!(status.success(), "{err}");
}
