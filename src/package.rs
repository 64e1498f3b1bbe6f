//! The uploader's deployment package from `up --code PATH`: a directory, a `.zip`, or one
//! file. Built the same way every time (entries sorted, fixed timestamps and modes), so the
//! same folder gives the same bytes and the same `CodeSha256`, and checked against Lambda's
//! limits before any call.
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::InputError;

/// Lambda's limit for a package uploaded with the API (`ZipFile`), zipped ("Lambda quotas",
/// Lambda developer guide: 50 MB).
pub(crate) const ZIPPED_LIMIT: u64 = 50 * 1024 * 1024;
/// Lambda's limit for the package unzipped, layers included (same page: 250 MB).
pub(crate) const UNZIPPED_LIMIT: u64 = 250 * 1024 * 1024;

/// Left out of a directory's package: version-control folders, bytecode caches and editor or
/// OS litter, none of which a function runs.
pub(crate) const EXCLUDED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
];
pub(crate) const EXCLUDED_FILES: &[&str] = &[".DS_Store", "Thumbs.db"];
pub(crate) const EXCLUDED_SUFFIXES: &[&str] = &[".pyc", ".pyo"];

/// A deployment package and what privbucket checks in it.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) bytes: Vec<u8>,
    /// The entries' paths, `/`-separated.
    pub(crate) files: Vec<String>,
    pub(crate) unzipped: u64,
}

impl Package {
    /// `CodeSha256` as Lambda reports it: base64 of the SHA-256 of the package.
    pub(crate) fn sha256(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&self.bytes))
    }

    pub(crate) fn has(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file)
    }

    /// The package from `PATH`, within Lambda's limits.
    pub(crate) fn build(path: &Path) -> Result<Package, InputError> {
        let shown = path.display();
        let meta =
            std::fs::metadata(path).map_err(|e| InputError(format!("--code {shown}: {e}")))?;
        let package = if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, Path::new(""), &mut files)?;
            if files.is_empty() {
                return Err(InputError(format!(
                    "--code {shown}: the directory holds no file to deploy"
                )));
            }
            files.sort();
            zip_files(path, &files)?
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            let bytes =
                std::fs::read(path).map_err(|e| InputError(format!("--code {shown}: {e}")))?;
            read_zip(path, bytes)?
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = path.parent().unwrap_or(Path::new("."));
            zip_files(dir, &[PathBuf::from(name)])?
        };
        if package.bytes.len() as u64 > ZIPPED_LIMIT {
            return Err(InputError(format!(
                "--code {shown}: the package is {}, over Lambda's {} limit for a package \
                 uploaded directly; leave out what the function does not need",
                mib(package.bytes.len() as u64),
                mib(ZIPPED_LIMIT)
            )));
        }
        if package.unzipped > UNZIPPED_LIMIT {
            return Err(InputError(format!(
                "--code {shown}: the package is {} unzipped, over Lambda's {} limit",
                mib(package.unzipped),
                mib(UNZIPPED_LIMIT)
            )));
        }
        Ok(package)
    }
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

fn excluded(name: &str, is_dir: bool) -> bool {
    if is_dir {
        EXCLUDED_DIRS.contains(&name)
    } else {
        EXCLUDED_FILES.contains(&name) || EXCLUDED_SUFFIXES.iter().any(|s| name.ends_with(s))
    }
}

/// Every file under `root/rel`, relative to `root`, following symbolic links.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| InputError(format!("--code: cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| InputError(format!("--code: cannot read {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|e| InputError(format!("--code: cannot read {}: {e}", path.display())))?;
        if excluded(&name, meta.is_dir()) {
            continue;
        }
        if meta.is_dir() {
            walk(root, &rel.join(&name), out)?;
        } else {
            out.push(rel.join(&name));
        }
    }
    Ok(())
}

/// `/`-separated, as zip entries are named.
fn entry_name(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Executable (by anyone) on disk, or named `bootstrap`: 0755; anything else 0644.
fn mode(path: &Path, name: &str) -> u32 {
    #[cfg(unix)]
    let executable = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    #[cfg(not(unix))]
    let executable = false;
    if executable || name == "bootstrap" || name.ends_with("/bootstrap") {
        0o755
    } else {
        0o644
    }
}

fn zip_files(root: &Path, files: &[PathBuf]) -> Result<Package, InputError> {
    let mut entries = Vec::new();
    for rel in files {
        let path = root.join(rel);
        let name = entry_name(rel);
        let data = std::fs::read(&path)
            .map_err(|e| InputError(format!("--code: cannot read {}: {e}", path.display())))?;
        let mode = mode(&path, &name);
        entries.push((name, data, mode));
    }
    zip_entries(entries).map_err(|e| InputError(format!("--code: packaging failed: {e}")))
}

impl Package {
    /// A package of files held in memory (the example handler), built as a folder's is.
    pub(crate) fn of(entries: Vec<(String, Vec<u8>, u32)>) -> zip::result::ZipResult<Package> {
        zip_entries(entries)
    }
}

/// The one place a package is zipped: entries in the order given, fixed timestamps, the
/// modes given.
fn zip_entries(entries: Vec<(String, Vec<u8>, u32)>) -> zip::result::ZipResult<Package> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut unzipped = 0;
    let mut files = Vec::new();
    for (name, data, mode) in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(mode);
        zip.start_file(name.as_str(), options)?;
        zip.write_all(&data)?;
        unzipped += data.len() as u64;
        files.push(name);
    }
    Ok(Package {
        bytes: zip.finish()?.into_inner(),
        files,
        unzipped,
    })
}

/// A `.zip` is deployed as it is; its entries are read for the checks.
fn read_zip(path: &Path, bytes: Vec<u8>) -> Result<Package, InputError> {
    let shown = path.display();
    let (files, unzipped) = entries(&bytes)
        .map_err(|e| InputError(format!("--code {shown}: not a usable zip file: {e}")))?;
    Ok(Package {
        bytes,
        files,
        unzipped,
    })
}

/// The files of a zip and what they unzip to (counted, not taken from the entries' claims),
/// up to just over the limit.
fn entries(bytes: &[u8]) -> Result<(Vec<String>, u64), Box<dyn std::error::Error>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))?;
    let mut files = Vec::new();
    let mut unzipped = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let room = UNZIPPED_LIMIT + 1 - unzipped.min(UNZIPPED_LIMIT);
        let n = std::io::copy(&mut (&mut entry).take(room), &mut std::io::sink())?;
        unzipped += n;
        files.push(entry.name()?.into_owned());
        if unzipped > UNZIPPED_LIMIT {
            break;
        }
    }
    Ok((files, unzipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("app.py"), "def handler(e, c):\n    return e\n").unwrap();
        std::fs::create_dir_all(p.join("lib/__pycache__")).unwrap();
        std::fs::write(p.join("lib/util.py"), "X = 1\n").unwrap();
        std::fs::write(p.join("lib/__pycache__/util.cpython-313.pyc"), "bytecode").unwrap();
        std::fs::write(p.join("lib/old.pyc"), "bytecode").unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::write(p.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(p.join(".DS_Store"), "litter").unwrap();
        d
    }

    #[test]
    fn a_folder_gives_the_same_bytes_every_time_without_caches_or_vcs() {
        let d = folder();
        let a = Package::build(d.path()).unwrap();
        // Touch a file: same content, new mtime.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(
            d.path().join("app.py"),
            "def handler(e, c):\n    return e\n",
        )
        .unwrap();
        let b = Package::build(d.path()).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.files, vec!["app.py", "lib/util.py"]);
        std::fs::write(d.path().join("lib/util.py"), "X = 2\n").unwrap();
        assert_ne!(Package::build(d.path()).unwrap().sha256(), a.sha256());
    }

    #[cfg(unix)]
    #[test]
    fn bootstrap_is_executable_and_other_files_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("bootstrap"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.path().join("data.txt"), "x").unwrap();
        std::fs::set_permissions(
            d.path().join("data.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let p = Package::build(d.path()).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(p.bytes)).unwrap();
        let mode = |zip: &mut zip::ZipArchive<Cursor<Vec<u8>>>, n: &str| {
            zip.by_name(n).unwrap().unix_mode().map(|m| m & 0o777)
        };
        assert_eq!(mode(&mut zip, "bootstrap"), Some(0o755));
        assert_eq!(mode(&mut zip, "data.txt"), Some(0o644));
        // One file on its own: `bootstrap` keeps its executable bit too.
        let one = Package::build(&d.path().join("bootstrap")).unwrap();
        assert_eq!(one.files, vec!["bootstrap"]);
        let mut zip = zip::ZipArchive::new(Cursor::new(one.bytes)).unwrap();
        assert_eq!(mode(&mut zip, "bootstrap"), Some(0o755));
    }

    #[test]
    fn a_zip_is_deployed_as_it_is_and_a_missing_path_is_named() {
        let d = folder();
        let built = Package::build(d.path()).unwrap();
        let zip_path = d.path().join("fn.zip");
        std::fs::write(&zip_path, &built.bytes).unwrap();
        let read = Package::build(&zip_path).unwrap();
        assert_eq!(read.bytes, built.bytes);
        assert_eq!(read.files, built.files);
        let e = Package::build(&d.path().join("nope")).unwrap_err();
        assert!(e.0.contains("nope"), "{e}");
        std::fs::write(d.path().join("bad.zip"), "not a zip").unwrap();
        let e = Package::build(&d.path().join("bad.zip")).unwrap_err();
        assert!(e.0.contains("not a usable zip"), "{e}");
    }
}
