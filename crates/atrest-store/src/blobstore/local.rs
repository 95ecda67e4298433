//! A directory: `<dir>/<resource>/<name>`. A body is written to a temporary file in the
//! resource's directory, synced, renamed into place and the directory synced, so a crash
//! leaves either nothing or the whole body (plus, at worst, a `.tmp-*` file).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A local blob directory.
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// Bodies under `dir`.
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    pub(super) fn check(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    /// The path of one body.
    #[must_use]
    pub fn path(&self, resource: &str, name: &str) -> PathBuf {
        self.dir.join(resource).join(name)
    }

    pub(super) fn create(&self, resource: &str, name: &str) -> io::Result<FileSink> {
        let dir = self.dir.join(resource);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".tmp-{}", hex::encode(rand_tag()?)));
        let file = File::create(&tmp)?;
        Ok(FileSink { out: Some(BufWriter::with_capacity(256 * 1024, file)), tmp, path: dir.join(name), dir })
    }

    pub(super) fn open(&self, resource: &str, name: &str) -> io::Result<File> {
        File::open(self.path(resource, name))
    }

    pub(super) fn remove(&self, resource: &str, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(resource, name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub(super) fn resources(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }

    pub(super) fn list(&self, resource: &str) -> io::Result<Vec<super::ListedBody>> {
        let entries = match std::fs::read_dir(self.dir.join(resource)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r?,
        };
        let now = std::time::SystemTime::now();
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            let meta = e.metadata()?;
            if meta.is_file() {
                let age = now.duration_since(meta.modified()?).unwrap_or_default();
                out.push(super::ListedBody { name: e.file_name().to_string_lossy().into_owned(), age });
            }
        }
        Ok(out)
    }

    pub(super) fn remove_resource(&self, resource: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.dir.join(resource)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn rand_tag() -> io::Result<[u8; 8]> {
    atrest_crypto::rand::bytes::<8>().map_err(io::Error::other)
}

/// A body being written to a temporary file.
pub struct FileSink {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
}

impl FileSink {
    pub(super) fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().ok_or_else(|| io::Error::other("committed twice"))?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().ok_or_else(|| io::Error::other("committed"))?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // Not committed (or the rename failed): the temporary file goes.
        if self.out.is_some() || self.tmp.exists() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
