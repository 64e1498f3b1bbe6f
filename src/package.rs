//! The uploader's deployment package from `up --code PATH`: a directory, a `.zip`, or one
//! file. Built the same way every time (entries sorted, fixed timestamps and modes), so the
//! same folder gives the same bytes and the same `CodeSha256`, and checked against Lambda's
//! limits before any call.
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// privbucket's own files by name: the default state file and its lock, and the copies of a
/// rejected S3 state write (`privbucket.state.STACK.rejected.json`). Never part of a package:
/// the state names the account, every resource and the function's settings.
const OWN_NAMES: &[&str] = &["privbucket.state.json", "privbucket.state.json.lock"];
const OWN_SUFFIXES: &[&str] = &[".rejected.json"];

/// The state file `--state` names on this machine and its lock, made absolute: set once per
/// process by the command, before any package is built, as the working folder is.
static OWN_FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Records where this run keeps its state, so that no package takes it in.
pub(crate) fn set_own_files(paths: Vec<PathBuf>) {
    let absolute = paths
        .into_iter()
        .filter_map(|p| std::path::absolute(&p).ok())
        .collect();
    let _ = OWN_FILES.set(absolute);
}

fn own_file(path: &Path, name: &str) -> bool {
    if OWN_NAMES.contains(&name) || OWN_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return true;
    }
    let Some(own) = OWN_FILES.get() else {
        return false;
    };
    let here = std::path::absolute(path).ok();
    let real = std::fs::canonicalize(path).ok();
    own.iter().any(|o| {
        Some(o) == here.as_ref() || (real.is_some() && std::fs::canonicalize(o).ok() == real)
    })
}

/// A deployment package and what privbucket checks in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Package {
    pub(crate) bytes: Vec<u8>,
    /// The entries' paths, `/`-separated.
    pub(crate) files: Vec<String>,
    pub(crate) unzipped: u64,
    /// What `up` says about how the folder was read: privbucket's own files left out,
    /// symbolic links that leave the folder, dangling links skipped.
    pub(crate) notes: Vec<String>,
}

impl Package {
    /// `CodeSha256` as Lambda reports it: base64 of the SHA-256 of the package.
    pub(crate) fn sha256(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&self.bytes))
    }

    pub(crate) fn has(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file)
    }

    /// The package from `PATH`, within Lambda's limits. Reads the disk: call it off the
    /// async runtime's threads (`spawn_blocking`).
    pub(crate) fn build(path: &Path) -> Result<Package, InputError> {
        let shown = path.display();
        let meta =
            std::fs::metadata(path).map_err(|e| InputError(format!("--code {shown}: {e}")))?;
        let package = if meta.is_dir() {
            let listing = list(path)?;
            if listing.files.is_empty() {
                return Err(InputError(format!(
                    "--code {shown}: the directory holds no file to deploy"
                )));
            }
            let mut package = zip_files(&listing.files)?;
            package.notes = listing.notes;
            package
        } else if !meta.is_file() {
            return Err(not_a_file(path, &meta));
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            // Its size first: a zip over the limit is refused without being read.
            if meta.len() > ZIPPED_LIMIT {
                return Err(too_big(path, meta.len()));
            }
            let bytes =
                std::fs::read(path).map_err(|e| InputError(format!("--code {shown}: {e}")))?;
            read_zip(path, bytes)?
        } else {
            let name = utf8_name(path, path.file_name().unwrap_or_default())?;
            zip_files(&[(name, path.to_path_buf())])?
        };
        if package.bytes.len() as u64 > ZIPPED_LIMIT {
            return Err(too_big(path, package.bytes.len() as u64));
        }
        if package.unzipped > UNZIPPED_LIMIT {
            return Err(too_big_unzipped(path, package.unzipped));
        }
        Ok(package)
    }
}

fn too_big(path: &Path, size: u64) -> InputError {
    InputError(format!(
        "--code {}: the package is {}, over Lambda's {} limit for a package uploaded directly; \
         leave out what the function does not need",
        path.display(),
        mib(size),
        mib(ZIPPED_LIMIT)
    ))
}

fn too_big_unzipped(path: &Path, size: u64) -> InputError {
    InputError(format!(
        "--code {}: the package is {} unzipped, over Lambda's {} limit",
        path.display(),
        if size > UNZIPPED_LIMIT {
            format!("over {}", mib(UNZIPPED_LIMIT))
        } else {
            mib(size)
        },
        mib(UNZIPPED_LIMIT)
    ))
}

/// What a path is when it is neither a regular file nor a folder: reading a FIFO blocks
/// forever, a device never ends, a socket cannot be read at all.
fn not_a_file(path: &Path, meta: &std::fs::Metadata) -> InputError {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    InputError(format!(
        "--code: {} is {what}, which cannot go into a Lambda package; remove it from the \
         folder (or move the code to a folder of its own)",
        path.display()
    ))
}

fn utf8_name(path: &Path, name: &std::ffi::OsStr) -> Result<String, InputError> {
    name.to_str().map(str::to_string).ok_or_else(|| {
        InputError(format!(
            "--code: the name of {} is not valid UTF-8, which a zip entry (and Lambda) cannot \
             carry; rename it",
            path.display()
        ))
    })
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

/// A folder's files, as entry names and the paths to read them from, in entry order.
struct Listing {
    files: Vec<(String, PathBuf)>,
    notes: Vec<String>,
}

/// Every file under `root`, following symbolic links as `zip -r` and SAM do (walkdir finds
/// loops). Nothing is read here: a FIFO, socket or device and a name that is not UTF-8 are
/// refused first, and the sizes are added up from the metadata, so a folder over the limit
/// is refused before a byte of it is read.
fn list(root: &Path) -> Result<Listing, InputError> {
    let real_root = std::fs::canonicalize(root)
        .map_err(|e| InputError(format!("--code {}: {e}", root.display())))?;
    let walk = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !excluded(&e.file_name().to_string_lossy(), e.file_type().is_dir())
        });
    let (mut files, mut own, mut outside, mut dangling) = (vec![], vec![], vec![], vec![]);
    let mut total = 0u64;
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                dangling.push(dangling_link(root, &e)?);
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let name = relative(root, path)?;
        if entry.path_is_symlink()
            && let Ok(target) = std::fs::canonicalize(path)
            && !target.starts_with(&real_root)
        {
            outside.push(format!("{name} -> {}", target.display()));
        }
        let t = entry.file_type();
        if t.is_dir() {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| InputError(format!("--code: cannot read {}: {e}", path.display())))?;
        if !t.is_file() {
            return Err(not_a_file(path, &meta));
        }
        if own_file(path, &entry.file_name().to_string_lossy()) {
            own.push(name);
            continue;
        }
        total += meta.len();
        if total > UNZIPPED_LIMIT {
            return Err(too_big_unzipped(root, total));
        }
        files.push((name, path.to_path_buf()));
    }
    let notes = notes(root, &own, &outside, &dangling);
    Ok(Listing { files, notes })
}

/// A walk error that only means a link whose target is gone (an editor's `.#app.py`: nothing
/// to deploy), named for the notes; anything else refuses the folder.
fn dangling_link(root: &Path, e: &walkdir::Error) -> Result<String, InputError> {
    let at = e.path().map(Path::to_path_buf).unwrap_or_default();
    if let Some(ancestor) = e.loop_ancestor() {
        return Err(InputError(format!(
            "--code: the symbolic link {} loops back to {}; remove it",
            at.display(),
            ancestor.display()
        )));
    }
    if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(&at).is_err()
    {
        return Ok(rel_name(root, &at));
    }
    Err(InputError(format!(
        "--code: cannot read {}: {e}",
        at.display()
    )))
}

/// What `up` says about the folder: what it left out, followed, or skipped.
fn notes(root: &Path, own: &[String], outside: &[String], dangling: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    if !own.is_empty() {
        notes.push(format!(
            "left privbucket's own files out of the package: {}",
            own.join(", ")
        ));
    }
    if !outside.is_empty() {
        notes.push(format!(
            "followed symbolic links that leave {} into the package: {}",
            root.display(),
            outside.join(", ")
        ));
    }
    if !dangling.is_empty() {
        notes.push(format!(
            "skipped symbolic links whose target does not exist: {}",
            dangling.join(", ")
        ));
    }
    notes
}

/// `/`-separated and UTF-8, as zip entries are named.
fn relative(root: &Path, path: &Path) -> Result<String, InputError> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut parts = Vec::new();
    for c in rel.components() {
        parts.push(utf8_name(path, c.as_os_str())?);
    }
    Ok(parts.join("/"))
}

fn rel_name(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
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

/// Streams each file into the zip, so memory holds the zip and a buffer, never a whole
/// file: a file that grew since it was listed is read only up to what is left of the limit.
fn zip_files(files: &[(String, PathBuf)]) -> Result<Package, InputError> {
    let mut zip = Zipper::new();
    for (name, path) in files {
        let failed =
            |e: std::io::Error| InputError(format!("--code: cannot read {}: {e}", path.display()));
        let room = UNZIPPED_LIMIT + 1 - zip.unzipped.min(UNZIPPED_LIMIT);
        let file = std::fs::File::open(path).map_err(failed)?;
        zip.add(name, &mut file.take(room), mode(path, name))
            .map_err(|e| InputError(format!("--code: packaging {} failed: {e}", path.display())))?;
        if zip.unzipped > UNZIPPED_LIMIT {
            return Err(too_big_unzipped(path, zip.unzipped));
        }
        if zip.zipped() > ZIPPED_LIMIT {
            return Err(too_big(path, zip.zipped()));
        }
    }
    zip.finish()
        .map_err(|e| InputError(format!("--code: packaging failed: {e}")))
}

impl Package {
    /// A package of files held in memory (the example handler), built as a folder's is.
    pub(crate) fn of(entries: Vec<(String, Vec<u8>, u32)>) -> zip::result::ZipResult<Package> {
        zip_entries(entries)
    }
}

/// The one place a package is zipped: entries in the order given, fixed timestamps, the
/// modes given.
struct Zipper {
    zip: zip::ZipWriter<Cursor<Vec<u8>>>,
    files: Vec<String>,
    unzipped: u64,
}

impl Zipper {
    fn new() -> Zipper {
        Zipper {
            zip: zip::ZipWriter::new(Cursor::new(Vec::new())),
            files: Vec::new(),
            unzipped: 0,
        }
    }

    fn add(&mut self, name: &str, data: &mut impl Read, mode: u32) -> std::io::Result<()> {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(mode);
        self.zip.start_file(name, options)?;
        self.unzipped += std::io::copy(data, &mut self.zip)?;
        self.files.push(name.to_string());
        Ok(())
    }

    /// What is zipped so far (the compressor may still hold the last few KiB).
    fn zipped(&self) -> u64 {
        self.zip.get_ref().map_or(0, |c| c.get_ref().len() as u64)
    }

    fn finish(self) -> zip::result::ZipResult<Package> {
        Ok(Package {
            bytes: self.zip.finish()?.into_inner(),
            files: self.files,
            unzipped: self.unzipped,
            notes: Vec::new(),
        })
    }
}

fn zip_entries(entries: Vec<(String, Vec<u8>, u32)>) -> zip::result::ZipResult<Package> {
    let mut zip = Zipper::new();
    for (name, data, mode) in entries {
        zip.add(&name, &mut data.as_slice(), mode)?;
    }
    zip.finish()
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
        notes: Vec::new(),
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

    #[cfg(unix)]
    #[test]
    fn privbuckets_own_files_and_dangling_links_stay_out_and_loops_are_refused() {
        let d = folder();
        let p = d.path();
        std::fs::write(p.join("privbucket.state.json"), "{}").unwrap();
        std::fs::write(p.join("privbucket.state.json.lock"), "{}").unwrap();
        std::fs::write(p.join("privbucket.state.prod.rejected.json"), "{}").unwrap();
        std::os::unix::fs::symlink("gone", p.join(".#app.py")).unwrap();
        let built = Package::build(p).unwrap();
        assert_eq!(built.files, vec!["app.py", "lib/util.py"]);
        assert!(
            built.notes.iter().any(|n| n.contains(
                "privbucket.state.json, privbucket.state.json.lock, \
                 privbucket.state.prod.rejected.json"
            )),
            "{:?}",
            built.notes
        );
        assert!(
            built.notes.iter().any(|n| n.contains(".#app.py")),
            "{:?}",
            built.notes
        );
        std::os::unix::fs::symlink(".", p.join("lib/again")).unwrap();
        let e = Package::build(p).unwrap_err();
        assert!(e.0.contains("loops back"), "{e}");
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
