//! Hashing exactly the bytes a file's records were parsed from, in the same pass.
//!
//! The CSV parser reads ahead of the records it has returned, so the bytes it reads are
//! kept until a chunk boundary says how far the chunk reached; only those are hashed. The
//! hash committed with a chunk is therefore the hash of the file's bytes before the
//! chunk's `next_offset`, as they were when they were parsed. A record longer than the
//! bound ([`super::bound`]) is stepped over, hashed on the way, so the bytes kept stay
//! bounded too.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
};

use sluice_core::FileHash;

use super::bound::{RecordBound, RecordEnd};

/// A file's bytes from `hashed_to` on, hashed up to a position when asked.
#[derive(Debug)]
pub(super) struct HashingRead {
    file: RecordBound<io::Take<File>>,
    /// Reads stop at this offset from the file's start.
    limit: u64,
    hasher: blake3::Hasher,
    /// Absolute offset of `unhashed[0]`.
    hashed_to: u64,
    /// Bytes read (by the parser) but not hashed yet.
    unhashed: VecDeque<u8>,
}

/// Bytes read at a time while stepping over a long record.
const SKIP_BUFFER: usize = 64 << 10;

impl HashingRead {
    /// `file` positioned at `hashed_to`, whose bytes before it `hasher` has taken;
    /// reads stop at `limit` bytes from the file's start, and hand on at most
    /// `max_record` bytes of a record (see [`Self::start_record`]).
    pub(super) fn new(
        file: File,
        hasher: blake3::Hasher,
        hashed_to: u64,
        limit: u64,
        max_record: u64,
    ) -> Self {
        let file = file.take(limit.saturating_sub(hashed_to));
        HashingRead {
            file: RecordBound::new(file, hashed_to, max_record, limit),
            limit,
            hasher,
            hashed_to,
            unhashed: VecDeque::new(),
        }
    }

    /// The parser starts a record at absolute offset `at`: reads fail with
    /// [`super::bound::RecordTooLong`] once it would take more than the bound.
    pub(super) fn start_record(&mut self, at: u64) {
        self.file.start_record(at);
    }

    /// The longest record handed on whole.
    pub(super) fn max_record(&self) -> u64 {
        self.file.max()
    }

    /// Hashes the bytes read before absolute offset `to` (which must have been read) and
    /// returns the hash of the file's bytes before it.
    pub(super) fn hash_to(&mut self, to: u64) -> FileHash {
        self.advance(to);
        FileHash(self.hasher.finalize().to_hex().to_string())
    }

    /// Hashes the bytes read before absolute offset `to`, so they need not be kept.
    pub(super) fn advance(&mut self, to: u64) {
        let n = (to.saturating_sub(self.hashed_to) as usize).min(self.unhashed.len());
        let (a, b) = self.unhashed.as_slices();
        let from_a = n.min(a.len());
        self.hasher.update(&a[..from_a]);
        self.hasher.update(&b[..n - from_a]);
        self.unhashed.drain(..n);
        self.hashed_to += n as u64;
    }

    /// The byte at absolute offset `at`, if it has been read and not hashed yet.
    pub(super) fn byte_at(&self, at: u64) -> Option<u8> {
        let i = usize::try_from(at.checked_sub(self.hashed_to)?).ok()?;
        self.unhashed.get(i).copied()
    }

    /// Reads and hashes `n` bytes without handing them on (bytes that are hashed but not
    /// parsed: a header already read, a line end); false if they do not begin with
    /// `expect` (all `n` are hashed either way).
    pub(super) fn skip(&mut self, n: u64, expect: &[u8]) -> io::Result<bool> {
        self.file.lift();
        let to = self.hashed_to + n;
        let mut head = vec![0; expect.len().min(n as usize)];
        let read = read_full(self, &mut head)?;
        io::copy(&mut self.by_ref().take(n - read as u64), &mut io::sink())?;
        self.advance(to);
        Ok(head[..read] == expect[..expect.len().min(n as usize)])
    }

    /// Steps over the record the parser began looking for at absolute offset `from`
    /// (read in part: every byte handed on since), hashing every byte up to its end,
    /// without keeping them. Returns the end's offset and the line feeds before it from
    /// `from`. Reading goes on from the end (the parser must be reset to it).
    pub(super) fn skip_record(&mut self, from: u64, mut end: RecordEnd) -> io::Result<(u64, u64)> {
        self.advance(from);
        let read = self.file.at();
        let at = match end.feed(self.unhashed.make_contiguous()) {
            Some(n) => from + n as u64,
            None => {
                self.advance(read);
                self.hash_until_record_end(read, &mut end)?
            }
        };
        self.advance(at);
        self.unhashed.clear();
        self.hashed_to = at;
        self.seek_to(at)?;
        Ok((at, end.line_feeds))
    }

    /// Moves the file to absolute offset `at`, nothing handed on or kept before it.
    fn seek_to(&mut self, at: u64) -> io::Result<()> {
        let file = self.file.get_mut();
        file.get_mut().seek(SeekFrom::Start(at))?;
        file.set_limit(self.limit.saturating_sub(at));
        self.file.moved_to(at);
        Ok(())
    }

    /// Reads on from absolute offset `at` (everything before it hashed) to the end of the
    /// record `end` is in, hashing; returns the end's offset.
    fn hash_until_record_end(&mut self, mut at: u64, end: &mut RecordEnd) -> io::Result<u64> {
        let mut buf = vec![0u8; SKIP_BUFFER];
        loop {
            let n = loop {
                match self.file.get_mut().read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            match end.feed(&buf[..n]) {
                Some(k) => {
                    self.hasher.update(&buf[..k]);
                    return Ok(at + k as u64);
                }
                None => {
                    self.hasher.update(&buf[..n]);
                    at += n as u64;
                }
            }
        }
    }
}

/// Reads seek nowhere: the CSV parser is reset to where a long record ends through a seek
/// to the current position (`SeekFrom::Current(0)`), which is all this supports.
impl Seek for HashingRead {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Current(0) => Ok(self.file.at()),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a file being parsed is only read forward",
            )),
        }
    }
}

/// Reads until `buf` is full or the input ends; how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for HashingRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.unhashed.extend(&buf[..n]);
        Ok(n)
    }
}

/// One pass over a file: the hash of all of it and, at one offset, the hash state there
/// and the bytes around it (to tell whether what follows continues a line).
#[derive(Debug)]
pub struct FileScan {
    /// BLAKE3 of the whole file as read.
    pub hash: FileHash,
    /// Bytes read.
    pub len: u64,
    /// At the offset asked for, if the file reaches it.
    pub at: Option<ScanPoint>,
}

/// The state of a [`FileScan`] at one offset.
#[derive(Debug, Clone)]
pub struct ScanPoint {
    pub offset: u64,
    /// Hash state after exactly the bytes before `offset`.
    pub hasher: blake3::Hasher,
    /// The byte before `offset` (none at 0).
    pub before: Option<u8>,
    /// Up to two bytes from `offset` on.
    pub after: Vec<u8>,
}

impl ScanPoint {
    pub fn hash(&self) -> FileHash {
        FileHash(self.hasher.finalize().to_hex().to_string())
    }
}

/// Reads `file` once: its hash, and the hash state at `at` (if the file is that long).
pub fn scan(mut file: File, at: Option<u64>) -> io::Result<FileScan> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    let mut point: Option<ScanPoint> = None;
    let mut last = None;
    loop {
        let n = file.read(&mut buf)?;
        let read = &buf[..n];
        if let Some(p) = point.as_mut().filter(|p| p.after.len() < 2) {
            let more = (2 - p.after.len()).min(n);
            p.after.extend_from_slice(&read[..more]);
        }
        match at {
            Some(at) if point.is_none() && at >= len && at <= len + n as u64 => {
                let split = (at - len) as usize;
                hasher.update(&read[..split]);
                let before = match split {
                    0 => last,
                    s => Some(read[s - 1]),
                };
                point = Some(ScanPoint {
                    offset: at,
                    hasher: hasher.clone(),
                    before,
                    after: read[split..].iter().take(2).copied().collect(),
                });
                hasher.update(&read[split..]);
            }
            _ => {
                hasher.update(read);
            }
        }
        len += n as u64;
        if n == 0 {
            break;
        }
        last = read.last().copied();
    }
    Ok(FileScan {
        hash: FileHash(hasher.finalize().to_hex().to_string()),
        len,
        at: point,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn hash(bytes: &[u8]) -> FileHash {
        FileHash(blake3::hash(bytes).to_hex().to_string())
    }

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(content).expect("write");
        f
    }

    #[test]
    fn a_scan_gives_the_hash_of_the_file_and_of_its_prefix() {
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let f = file_with(&content);
        for at in [0, 1, 1 << 20, (1 << 20) + 7, 2_999_999, 3_000_000] {
            let s = scan(f.reopen().expect("open"), Some(at)).expect("scan");
            assert_eq!(s.hash, hash(&content));
            assert_eq!(s.len, 3_000_000);
            let p = s.at.expect("point");
            let at = at as usize;
            assert_eq!(p.hash(), hash(&content[..at]), "at {at}");
            assert_eq!(p.before, at.checked_sub(1).map(|i| content[i]));
            assert_eq!(p.after, content[at..(at + 2).min(content.len())].to_vec());
        }
        let s = scan(f.reopen().expect("open"), Some(3_000_001)).expect("scan");
        assert!(s.at.is_none(), "a point past the end");
    }

    #[test]
    fn hashing_read_hashes_only_up_to_the_position_asked() {
        let content = b"header\nab,c\nde,f\ngh,i\n".to_vec();
        let f = file_with(&content);
        let mut r = HashingRead::new(f.reopen().expect("open"), blake3::Hasher::new(), 0, 17, 100);
        assert!(r.skip(7, b"head").expect("skip"), "begins as expected");
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"ab,c\nde,f\n", "stops at the limit");
        assert_eq!(r.hash_to(12), hash(&content[..12]));
        assert_eq!(r.hash_to(17), hash(&content[..17]));
        let mut other =
            HashingRead::new(f.reopen().expect("open"), blake3::Hasher::new(), 0, 17, 100);
        assert!(!other.skip(7, b"heaver\n").expect("skip"), "differs");
        assert_eq!(other.hash_to(7), hash(&content[..7]), "hashed either way");
    }
}
