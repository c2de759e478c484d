//! Where a mail waits between the client's DATA and the upstream transaction.
//!
//! Small mails stay in memory; once a mail grows past the memory bound it moves to
//! an unnamed temporary file in the data directory (`O_TMPFILE` where the file system
//! has it). An unnamed file has no path, so it disappears on every outcome, a crash
//! included, and no other process can open it by name.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Read buffer for a spool file.
const READ_BUFFER: usize = 256 * 1024;

/// The spool's size settings.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    pub memory_limit: usize,
}

/// A mail being received or processed.
pub struct Spool {
    mem: Vec<u8>,
    file: Option<tokio::fs::File>,
    len: u64,
    settings: SpoolSettings,
    /// Bytes that come before the file's content when read (see [`Spool::spliced`]).
    prefix: Vec<u8>,
    /// File bytes skipped when read: the part `prefix` replaces.
    skip: u64,
}

impl Spool {
    pub fn new(settings: &SpoolSettings) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            settings: settings.clone(),
            prefix: Vec::new(),
            skip: 0,
        }
    }

    /// A spool holding `data`, for tests and small generated mails.
    pub fn from_bytes(data: Vec<u8>, settings: &SpoolSettings) -> Spool {
        let len = data.len() as u64;
        Spool {
            mem: data,
            file: None,
            len,
            settings: settings.clone(),
            prefix: Vec::new(),
            skip: 0,
        }
    }

    /// A new in-memory spool with the same settings, holding `data` (a processed
    /// mail replacing this one).
    pub fn with_bytes(&self, data: Vec<u8>) -> Spool {
        Spool::from_bytes(data, &self.settings)
    }

    /// The length as read: a spliced prefix counts, skipped bytes do not.
    pub fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.len - self.skip
    }

    /// This spool read as `prefix` followed by its own bytes from `skip` on: a large
    /// mail with a changed start (a new header, a note in its first text part) costs
    /// no second copy. The spool must not be written to afterwards.
    pub fn spliced(mut self, prefix: Vec<u8>, skip: u64) -> Spool {
        if self.file.is_none() {
            let skip = (skip as usize).min(self.mem.len());
            let mut mem = prefix;
            mem.extend_from_slice(&self.mem[skip..]);
            return Spool::from_bytes(mem, &self.settings);
        }
        self.skip = skip.min(self.len);
        self.prefix = prefix;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the mail has moved to a file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Appends `data`.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        debug_assert!(
            self.prefix.is_empty() && self.skip == 0,
            "a spliced spool is read-only"
        );
        if data.is_empty() {
            return Ok(());
        }
        if self.file.is_none() && self.mem.len() + data.len() > self.settings.memory_limit {
            let std_file = unnamed_temp_file(&self.settings.dir)?;
            let mut f = tokio::fs::File::from_std(std_file);
            f.write_all(&self.mem).await?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(data).await?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Makes the written bytes durable for reading and returns a reader from the start.
    pub async fn reader(&mut self) -> io::Result<Pin<Box<dyn AsyncRead + Send + '_>>> {
        match self.file.as_mut() {
            Some(f) => {
                f.flush().await?;
                f.seek(SeekFrom::Start(self.skip)).await?;
                let file = tokio::io::BufReader::with_capacity(READ_BUFFER, f);
                Ok(Box::pin(AsyncReadExt::chain(&self.prefix[..], file)))
            }
            None => Ok(Box::pin(&self.mem[..])),
        }
    }

    /// An owned reader from the start, consuming the spool (its file goes when the
    /// reader is dropped).
    pub async fn into_reader(self) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
        self.into_reader_from(0).await
    }

    /// An owned reader from byte `offset` on (of the spool as read), consuming the
    /// spool.
    pub async fn into_reader_from(
        mut self,
        offset: u64,
    ) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
        let in_prefix = (offset as usize).min(self.prefix.len());
        let prefix = self.prefix.split_off(in_prefix);
        let file_offset = self.skip + (offset - in_prefix as u64);
        match self.file.take() {
            Some(mut f) => {
                f.flush().await?;
                f.seek(SeekFrom::Start(file_offset)).await?;
                let file = tokio::io::BufReader::with_capacity(READ_BUFFER, f);
                Ok(Box::pin(AsyncReadExt::chain(
                    std::io::Cursor::new(prefix),
                    file,
                )))
            }
            None => {
                let mut mem = std::mem::take(&mut self.mem);
                mem.drain(..(offset as usize).min(mem.len()));
                Ok(Box::pin(std::io::Cursor::new(mem)))
            }
        }
    }

    /// The first `max` bytes (fewer when the spool is shorter), to read a header.
    pub async fn read_prefix(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(max.min(self.len() as usize));
        self.reader()
            .await?
            .take(max as u64)
            .read_to_end(&mut out)
            .await?;
        Ok(out)
    }

    /// The whole mail in memory; only for mails known to be small.
    pub async fn to_vec(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len() as usize);
        self.reader().await?.read_to_end(&mut out).await?;
        Ok(out)
    }
}

/// An unnamed temporary file in `dir`: never visible by name, gone when closed.
fn unnamed_temp_file(dir: &Path) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    tempfile::tempfile_in(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create a spool file in {}: {e}", dir.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_mail_stays_in_memory_large_one_moves_to_an_unnamed_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = SpoolSettings {
            dir: dir.path().to_path_buf(),
            memory_limit: 10,
        };
        let mut a = Spool::new(&s);
        a.write(b"hello").await.unwrap();
        assert!(!a.on_disk());
        assert_eq!(a.to_vec().await.unwrap(), b"hello");

        let mut b = Spool::new(&s);
        b.write(b"hello ").await.unwrap();
        b.write(b"world, this is longer").await.unwrap();
        assert!(b.on_disk());
        assert_eq!(b.len(), 27);
        assert_eq!(b.to_vec().await.unwrap(), b"hello world, this is longer");
        // reading twice gives the same bytes
        assert_eq!(b.to_vec().await.unwrap(), b"hello world, this is longer");
        // nothing visible by name in the spool folder
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn spliced_and_offset_reads() {
        let dir = tempfile::tempdir().unwrap();
        for limit in [4, 1000] {
            let s = SpoolSettings {
                dir: dir.path().to_path_buf(),
                memory_limit: limit,
            };
            let mut a = Spool::new(&s);
            a.write(b"Subject: x\r\n\r\nbody text").await.unwrap();
            assert_eq!(a.read_prefix(7).await.unwrap(), b"Subject");
            let mut b = a.spliced(b"Subject: yy\r\n".to_vec(), 12);
            assert_eq!(b.len(), 24);
            assert_eq!(b.to_vec().await.unwrap(), b"Subject: yy\r\n\r\nbody text");
            assert_eq!(b.read_prefix(11).await.unwrap(), b"Subject: yy");
            let mut rest = Vec::new();
            b.into_reader_from(13)
                .await
                .unwrap()
                .read_to_end(&mut rest)
                .await
                .unwrap();
            assert_eq!(rest, b"\r\nbody text");
            // an offset inside the prefix
            let mut c = Spool::new(&s);
            c.write(b"Subject: x\r\n\r\nbody text").await.unwrap();
            let c = c.spliced(b"Subject: yy\r\n".to_vec(), 12);
            let mut rest = Vec::new();
            c.into_reader_from(5)
                .await
                .unwrap()
                .read_to_end(&mut rest)
                .await
                .unwrap();
            assert_eq!(rest, b"ct: yy\r\n\r\nbody text");
        }
    }
}
