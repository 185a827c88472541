//! The last good data of each environment on disk, so that a relay restarted while its upstream
//! is unreachable serves what it last had (its status says since when) instead of nothing.
//!
//! One file per environment, `<data_dir>/<project>.<key>.json`: `{"savedAt", "data"}`. Written
//! whole to a temporary file, synced, then renamed over the old one, so that a crash leaves the
//! old copy or the new one, never half of one. Writes follow changes at most a few times a
//! second (a burst of patches is one write). The SDK key is not written: the file holds what
//! SDKs receive anyway.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flagstaff_delivery::EnvironmentId;
use flagstaff_delivery::replica::Replica;
use flagstaff_protocol::FlagData;
use tokio::sync::watch;

/// Changes within this time after the first are written together.
const COALESCE: Duration = Duration::from_millis(200);

/// The file of an environment.
pub(crate) fn path_of(data_dir: &Path, id: &EnvironmentId) -> PathBuf {
    data_dir.join(format!("{}.{}.json", id.project, id.environment))
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    saved_at: i64,
    data: FlagData,
}

/// Reads an environment's last saved data and when it was saved; `None` when there is none or
/// it cannot be read (said in the log: the relay then waits for the upstream).
pub(crate) fn load(path: &Path) -> Option<(FlagData, i64)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved data");
            return None;
        }
    };
    match serde_json::from_str::<Saved>(&text) {
        Ok(saved) => Some((saved.data, saved.saved_at)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the saved data does not parse; ignoring it");
            None
        }
    }
}

/// Writes `data` to `path` atomically.
pub(crate) fn save(path: &Path, data: FlagData, saved_at: i64) -> std::io::Result<()> {
    let json = serde_json::to_vec(&Saved { saved_at, data }).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    // The rename is durable once the directory is synced.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Keeps an environment's file following the replica, until the process ends.
pub(crate) async fn follow(
    replica: Arc<Replica>,
    id: EnvironmentId,
    path: PathBuf,
    mut changed: watch::Receiver<u64>,
) {
    while changed.changed().await.is_ok() {
        tokio::time::sleep(COALESCE).await;
        changed.mark_unchanged();
        let Some(data) = replica.data(&id) else {
            continue;
        };
        let path = path.clone();
        let saved_at = crate::now_millis();
        let written = tokio::task::spawn_blocking(move || save(&path, data, saved_at)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(environment = %id, error = %e, "cannot save the data to disk")
            }
            Err(e) => tracing::warn!(environment = %id, error = %e, "the save task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_data_reads_back_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let id = EnvironmentId {
            project: "p".into(),
            environment: "e".into(),
        };
        let path = path_of(dir.path(), &id);
        assert!(load(&path).is_none());
        let data = FlagData::from_json_str(
            r#"{"flags":{"a":{"key":"a","version":7,"variations":[1,2]}},"segments":{}}"#,
        )
        .unwrap();
        save(&path, data.clone(), 42).unwrap();
        let (read, at) = load(&path).unwrap();
        assert_eq!(at, 42);
        assert_eq!(read, data);
        std::fs::write(&path, b"{half").unwrap();
        assert!(load(&path).is_none());
    }
}
