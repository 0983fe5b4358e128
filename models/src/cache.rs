//! Where installed model files live, and checking them.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Model, ModelOrigin, VerifyMode};

/// The model directory of the Panoptes cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCache {
    dir: PathBuf,
}

/// What [`ModelCache::verify`] could establish about a present file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The file hashes to the pinned sha256.
    Sha256Matches,
    /// The manifest pins no sha256 (a user's model): the file's hash, to pin it.
    Unpinned {
        /// The file's sha256.
        actual: String,
    },
    /// `verify = "structure"`: the structure hash needs the ONNX protobuf, which only
    /// `scripts/models-fetch.py --verify` computes; only the file's presence was checked.
    StructureNotChecked,
}

/// Why a model file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No file.
    #[error(
        "model `{model}`: {path} is missing: run scripts/setup.sh (or `python3 scripts/models-fetch.py {model}`)"
    )]
    Missing {
        /// Model id.
        model: String,
        /// Expected path.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("model `{model}`: cannot read {path}: {source}")]
    Io {
        /// Model id.
        model: String,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Wrong content.
    #[error(
        "model `{model}`: {path} has sha256 {actual}, the manifest pins {expected}: rebuild it with `python3 scripts/models-fetch.py --force {model}`"
    )]
    Mismatch {
        /// Model id.
        model: String,
        /// The path.
        path: PathBuf,
        /// Pinned hash.
        expected: String,
        /// Actual hash.
        actual: String,
    },
}

impl ModelCache {
    /// A cache rooted at `models_dir` (the directory holding the `.onnx` files).
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self { dir: models_dir.into() }
    }

    /// `$PANOPTES_CACHE/models`, else `$XDG_CACHE_HOME/panoptes/models`, else
    /// `$HOME/.cache/panoptes/models` (the layout of `scripts/setup.sh` and models-fetch.py).
    pub fn from_env() -> Self {
        Self::new(Self::root_from(
            std::env::var_os("PANOPTES_CACHE"),
            std::env::var_os("XDG_CACHE_HOME"),
            std::env::var_os("HOME"),
        ))
    }

    fn root_from(
        panoptes: Option<std::ffi::OsString>,
        xdg: Option<std::ffi::OsString>,
        home: Option<std::ffi::OsString>,
    ) -> PathBuf {
        let non_empty = |v: Option<std::ffi::OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
        let cache = non_empty(panoptes).unwrap_or_else(|| {
            non_empty(xdg)
                .or_else(|| non_empty(home).map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("panoptes")
        });
        cache.join("models")
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a model's file is: built-in models in the cache, user models relative to their
    /// manifest (or absolute).
    pub fn path_of(&self, model: &Model) -> PathBuf {
        let file = Path::new(&model.file);
        match &model.origin {
            _ if file.is_absolute() => file.to_owned(),
            ModelOrigin::Builtin => self.dir.join(file),
            ModelOrigin::User { dir } => dir.join(file),
        }
    }

    /// Checks the model's file as far as Rust can: presence, and the sha256 when that is the
    /// manifest's verify mode.
    pub fn verify(&self, model: &Model) -> Result<Verification, VerifyError> {
        let path = self.path_of(model);
        if !path.is_file() {
            return Err(VerifyError::Missing { model: model.id.clone(), path });
        }
        if model.verify == VerifyMode::Structure {
            return Ok(Verification::StructureNotChecked);
        }
        let actual = sha256_file(&path).map_err(|source| VerifyError::Io {
            model: model.id.clone(),
            path: path.clone(),
            source,
        })?;
        if model.sha256.is_empty() {
            Ok(Verification::Unpinned { actual })
        } else if actual == model.sha256 {
            Ok(Verification::Sha256Matches)
        } else {
            Err(VerifyError::Mismatch {
                model: model.id.clone(),
                path,
                expected: model.sha256.clone(),
                actual,
            })
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;

    #[test]
    fn cache_root_follows_env_precedence() {
        let s = |v: &str| Some(std::ffi::OsString::from(v));
        assert_eq!(ModelCache::root_from(s("/c"), s("/x"), s("/h")), PathBuf::from("/c/models"));
        assert_eq!(ModelCache::root_from(None, s("/x"), s("/h")), PathBuf::from("/x/panoptes/models"));
        assert_eq!(ModelCache::root_from(s(""), None, s("/h")), PathBuf::from("/h/.cache/panoptes/models"));
    }

    #[test]
    fn verify_checks_presence_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(dir.path());
        let mut model = Manifest::builtin().unwrap().get("nanodet").unwrap().clone();
        let e = cache.verify(&model).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("scripts/setup.sh"), "{e}");
        std::fs::write(dir.path().join(&model.file), b"hello").unwrap();
        let e = cache.verify(&model).unwrap_err().to_string();
        assert!(
            e.contains("has sha256 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            "{e}"
        );
        model.sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into();
        assert_eq!(cache.verify(&model).unwrap(), Verification::Sha256Matches);
        model.sha256.clear();
        assert!(matches!(cache.verify(&model).unwrap(), Verification::Unpinned { .. }));
        model.verify = VerifyMode::Structure;
        assert_eq!(cache.verify(&model).unwrap(), Verification::StructureNotChecked);
    }

    /// The installed models (setup fetches them) match the manifest.
    #[test]
    fn installed_models_verify() {
        let manifest = Manifest::builtin().unwrap();
        let cache = ModelCache::from_env();
        for id in ["centerface", "nanodet"] {
            let model = manifest.get(id).unwrap();
            match cache.verify(model) {
                Ok(v) => assert_eq!(v, Verification::Sha256Matches),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
