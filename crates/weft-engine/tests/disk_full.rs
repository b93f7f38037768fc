//! A full disk, for real: the data directory sits on a small tmpfs that a ballast file
//! fills. While it is full, starting a run is refused with a clear error and nothing
//! accepted is lost; reads keep working; once space is freed every accepted run finishes.
//!
//! Mounting a tmpfs needs root (CI and the development machines run as root); without it
//! the test fails saying so rather than passing without checking anything.

use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use weft_core::RunState;
use weft_engine::{Engine, EngineConfig, EngineError, StartRun};
use weft_store_sqlite::SqliteStore;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a disk for real and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system with a ballast file until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
    path
}

async fn start(engine: &Engine, i: usize) -> Result<String, EngineError> {
    let input = json!({ "i": i, "pad": "x".repeat(2000) });
    engine
        .run_start(StartRun {
            flow: "job".into(),
            input,
            ..Default::default()
        })
        .await
        .map(|c| c.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_runs_clearly_and_loses_none() {
    let fs = Tmpfs::mount("8m");
    let store = SqliteStore::open(&fs.path().join("data"), Default::default()).unwrap();
    let engine = Engine::start(store, EngineConfig::default()).await.unwrap();
    engine
        .flow_apply("name: job\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n")
        .await
        .unwrap();

    let mut accepted = Vec::new();
    for i in 0..20 {
        accepted.push(start(&engine, i).await.expect("room to spare"));
    }
    let ballast = fill(fs.path());

    // Keep starting runs until the disk refuses; every refusal must say why.
    let mut refused = None;
    for i in 20..5000 {
        match start(&engine, i).await {
            Ok(id) => accepted.push(id),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a full disk must refuse new runs");
    eprintln!("accepted {} runs, then: {refused}", accepted.len());
    assert!(
        matches!(refused, EngineError::Unavailable(_)),
        "{refused:?}"
    );
    assert!(
        refused.to_string().starts_with("disk full: free space"),
        "{refused}"
    );

    // Reads keep working while the disk is full.
    let first = engine
        .run_get(&accepted[0])
        .await
        .expect("reads still work");
    assert_eq!(first.run.id, accepted[0]);

    // Free the space: everything accepted, before and after, finishes.
    std::fs::remove_file(ballast).unwrap();
    for i in 0..20 {
        accepted.push(start(&engine, 10_000 + i).await.expect("room again"));
    }
    for id in &accepted {
        let v = tokio::time::timeout(Duration::from_secs(60), engine.wait_run(id))
            .await
            .unwrap_or_else(|_| panic!("run {id} did not finish after space was freed"))
            .unwrap();
        assert_eq!(v.run.state, RunState::Succeeded, "{id}");
    }
    engine.shutdown(Duration::from_secs(5)).await;
}
