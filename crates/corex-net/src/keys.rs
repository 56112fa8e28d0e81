//! Key files at rest: an ed25519 secret, hex-encoded, readable by its owner only (mode 0600).

use std::fs;
use std::io::Write;
use std::path::Path;

use corex_core::Keypair;
use corex_core::hash::{hex_decode_32, hex_encode};

use crate::error::NetError;

/// Fills `buffer` from the operating system's randomness.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], NetError> {
    let mut buffer = [0u8; N];
    getrandom::fill(&mut buffer).map_err(|error| NetError::Randomness(error.to_string()))?;
    Ok(buffer)
}

/// Loads the key at `path`, or creates a fresh one there (and its parent folder) if absent.
pub fn load_or_create_keypair(path: &Path) -> Result<Keypair, NetError> {
    if path.exists() {
        return load_keypair(path);
    }
    let keypair = Keypair::from_secret(random_bytes()?);
    write_private(
        path,
        format!("{}\n", hex_encode(&keypair.secret_bytes())).as_bytes(),
    )?;
    Ok(keypair)
}

pub fn load_keypair(path: &Path) -> Result<Keypair, NetError> {
    let key_error = |reason: String| NetError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    check_owner_only(path)?;
    let text = fs::read_to_string(path).map_err(|source| NetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let secret = hex_decode_32(text.trim()).map_err(|error| key_error(error.to_string()))?;
    Ok(Keypair::from_secret(secret))
}

/// Writes `bytes` to a new file that only its owner can read or write.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let io_error = |source| NetError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// Refuses a secret file that group or others may read: a leaked key cannot be un-leaked.
pub(crate) fn check_owner_only(path: &Path) -> Result<(), NetError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| NetError::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(NetError::KeyFile {
                path: path.to_owned(),
                reason: format!(
                    "permissions {:o} let others read it; run `chmod 600` on it",
                    mode & 0o777
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys/node.key");
        let created = load_or_create_keypair(&path).expect("created");
        assert_eq!(
            load_or_create_keypair(&path).expect("loaded").id(),
            created.id()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(load_keypair(&path), Err(NetError::KeyFile { .. })));
        }
    }

    #[test]
    fn a_garbled_key_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.key");
        write_private(&path, b"not hex").expect("written");
        assert!(matches!(load_keypair(&path), Err(NetError::KeyFile { .. })));
    }
}
