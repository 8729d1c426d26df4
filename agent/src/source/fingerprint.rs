//! Who a file is by content: a hash of its first bytes.
//!
//! A device and inode say which file a name holds now, not what it holds: copytruncate
//! keeps the inode and replaces the content, and a deleted file's inode is soon reused.
//! The first [`FINGERPRINT_BYTES`] of a log (its first lines, with their timestamps) tell
//! a file from its successor, as Vector's file source does with a checksum of its first
//! line. A file shorter than that is known by what it has so far, and its fingerprint
//! grows with it.
//!
//! The hash is FNV-1a, written here (a dozen lines): it must stay the same from release
//! to release, since fingerprints live in checkpoints, which the standard library's
//! `DefaultHasher` does not promise.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// Bytes a full fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;

/// The hash of a file's first `bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub bytes: u32,
    pub hash: u64,
}

impl Fingerprint {
    /// Of the first bytes of `file` (up to [`FINGERPRINT_BYTES`]); `None` for an empty file.
    pub fn of(file: &File) -> io::Result<Option<Self>> {
        let mut head = [0u8; FINGERPRINT_BYTES];
        let n = read_head(file, &mut head)?;
        Ok((n > 0).then(|| Self {
            bytes: n as u32,
            hash: fnv1a(&head[..n]),
        }))
    }

    /// Whether all [`FINGERPRINT_BYTES`] are covered: the fingerprint will not grow.
    pub fn is_complete(&self) -> bool {
        self.bytes as usize >= FINGERPRINT_BYTES
    }

    /// Whether `file` starts with the bytes this fingerprint was taken of (a file now
    /// shorter than them does not).
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let wanted = (self.bytes as usize).min(FINGERPRINT_BYTES);
        let mut head = [0u8; FINGERPRINT_BYTES];
        let n = read_head(file, &mut head[..wanted])?;
        Ok(n == wanted && fnv1a(&head[..n]) == self.hash)
    }
}

/// Reads from offset 0 until `buffer` is full or the file ends; the bytes read.
fn read_head(file: &File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(dir: &tempfile::TempDir, name: &str, text: &str) -> File {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        File::open(path).unwrap()
    }

    #[test]
    fn fnv1a_matches_its_published_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_file_that_grew_still_matches_and_one_with_new_content_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let short = file_with(&dir, "a", "2026-12-07 first line\n");
        let print = Fingerprint::of(&short).unwrap().unwrap();
        assert!(!print.is_complete());
        let grown = file_with(
            &dir,
            "b",
            &format!("2026-12-07 first line\n{}", "x".repeat(500)),
        );
        assert!(print.matches(&grown).unwrap());
        let full = Fingerprint::of(&grown).unwrap().unwrap();
        assert!(full.is_complete());
        let other = file_with(
            &dir,
            "c",
            &format!("2026-12-08 first line\n{}", "x".repeat(500)),
        );
        assert!(!print.matches(&other).unwrap() && !full.matches(&other).unwrap());
        // Truncated below the fingerprinted bytes: not the same file any more.
        let cut = file_with(&dir, "d", "2026-12-07");
        assert!(!print.matches(&cut).unwrap());
        assert_eq!(Fingerprint::of(&file_with(&dir, "e", "")).unwrap(), None);
    }
}
