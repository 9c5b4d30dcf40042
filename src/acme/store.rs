//! The `[acme]` storage directory: created mode 0700, every file in it written mode 0600 by
//! a write to a temporary name and a rename, so a reader (the certificate watcher, a restart)
//! sees the old file or the new one, never half of one. Holds `account.json` (the directory
//! URL and the account's credentials, its private key included) and `certs/NAME.pem` (the
//! chain, then the certificate's private key: one file, so the swap is one rename).

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What went wrong with a file of the storage. Each message names the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Create `dir` (and its parents) if missing, and make it 0700: it holds private keys.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))
}

/// Write `bytes` to `path` as a new 0600 file, replacing the old one in one rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}

/// The stored account: the directory it was made on and its credentials.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredAccount {
    pub directory: String,
    pub credentials: instant_acme::AccountCredentials,
}

/// The account stored at `path`; `Ok(None)` when there is none yet.
pub fn read_account(path: &Path) -> Result<Option<StoredAccount>, StoreError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            reason: format!("not a stored ACME account: {e}"),
        })
}

pub fn write_account(path: &Path, account: &StoredAccount) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(account).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_private(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("vipgate-acme-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let file = dir.join("certs").join("a.test.pem");
        write_private(&file, b"one").expect("written");
        write_private(&file, b"two").expect("rewritten");
        assert_eq!(fs::read(&file).unwrap(), b"two");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.join("certs")), 0o700);
        assert!(!file.with_extension("tmp").exists());
        assert!(read_account(&dir.join("account.json")).unwrap().is_none());
        fs::write(dir.join("account.json"), "{").unwrap();
        assert!(matches!(
            read_account(&dir.join("account.json")),
            Err(StoreError::Invalid { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
