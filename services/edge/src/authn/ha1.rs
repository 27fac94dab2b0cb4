//! Digest credentials from an HA1 file, reloaded when the file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use auth::digest::{CredentialSource, DigestAlgorithm, Ha1File};
use auth::AuthError;

/// Digest credentials from an HA1 file (format of [`Ha1File`]), re-read when
/// the file changes so users can be added or removed without a restart. A
/// file that no longer parses is reported and the previous credentials kept.
pub struct Ha1Credentials {
    path: PathBuf,
    current: RwLock<Loaded>,
}

struct Loaded {
    file: Ha1File,
    /// Modification time and length when read.
    fingerprint: Option<(SystemTime, u64)>,
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

impl Ha1Credentials {
    /// Reads the file; fails if it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Arc<Ha1Credentials>, AuthError> {
        let fingerprint = fingerprint(path);
        let file = Ha1File::load(path)?;
        Ok(Arc::new(Ha1Credentials {
            path: path.to_path_buf(),
            current: RwLock::new(Loaded { file, fingerprint }),
        }))
    }

    /// Number of users in the credentials currently in force.
    pub fn users(&self) -> usize {
        locks::read(&self.current).file.len()
    }

    /// Re-reads the file if its modification time or length changed;
    /// returns whether new credentials are in force.
    pub fn reload_if_changed(&self) -> bool {
        let now = fingerprint(&self.path);
        let unchanged = locks::read(&self.current).fingerprint == now;
        if unchanged {
            return false;
        }
        match Ha1File::load(&self.path) {
            Ok(file) => {
                let users = file.len();
                *locks::write(&self.current) = Loaded {
                    file,
                    fingerprint: now,
                };
                tracing::info!(path = %self.path.display(), users, "Digest credentials reloaded");
                true
            }
            Err(error) => {
                // Remember the broken version so it is reported once, not
                // every interval; the previous credentials stay in force.
                locks::write(&self.current).fingerprint = now;
                tracing::error!(path = %self.path.display(), %error, "Digest credentials file changed but cannot be used; keeping the previous credentials");
                false
            }
        }
    }

    /// Checks the file every `interval` until the credentials are dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let weak: Weak<Ha1Credentials> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(credentials) = weak.upgrade() else {
                    break;
                };
                credentials.reload_if_changed();
            }
        });
    }
}

impl CredentialSource for Ha1Credentials {
    fn ha1(&self, user: &str, realm: &str, alg: DigestAlgorithm) -> Option<String> {
        locks::read(&self.current).file.ha1(user, realm, alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_file_changes_are_picked_up_and_broken_files_ignored(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let path = std::env::temp_dir().join(format!(
            "edge-ha1-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        std::fs::write(&path, "alice:secret\n")?;
        let credentials = Ha1Credentials::load(&path)?;
        assert_eq!(credentials.users(), 1);
        assert!(credentials
            .ha1("bob", "example.com", DigestAlgorithm::Md5)
            .is_none());
        assert!(!credentials.reload_if_changed());

        std::fs::write(&path, "alice:secret\nbob:other-secret\n")?;
        assert!(credentials.reload_if_changed());
        assert_eq!(
            credentials.ha1("bob", "example.com", DigestAlgorithm::Md5),
            Some(auth::digest::ha1(
                DigestAlgorithm::Md5,
                "bob",
                "example.com",
                "other-secret"
            ))
        );

        std::fs::write(&path, "this line is not a credential at all\n")?;
        assert!(!credentials.reload_if_changed());
        assert_eq!(credentials.users(), 2);
        std::fs::remove_file(&path)?;
        Ok(())
    }
}
