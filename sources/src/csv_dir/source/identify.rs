//! What a complete file is, given the ledger: new, the content of a file already
//! committed, a committed file that grew (or was partly committed), or one whose committed
//! bytes changed.
//!
//! The file is read once to tell: the hash of all of it (to find the same content under
//! any name) and, where its name has a record, the hash of its first `next_offset` bytes
//! (to find out whether what was committed is still its beginning).

use std::{fs::File, path::Path};

use sluice_core::{FileLedger, FileRecord, FileStatus, LookupError};

use crate::csv_dir::{
    config::AfterIngest,
    reader::{scan, FileScan, ScanPoint},
};

/// What a complete file is.
#[derive(Debug)]
pub(super) enum Identity {
    /// Nothing of it is committed: read it all, as a file of its own.
    New,
    /// Its content is exactly what a record committed (or quarantined).
    Known(FileRecord),
    /// It begins with exactly the bytes `record` committed: read on from `point`,
    /// skipping `skip` bytes (the line end after a last line committed without one).
    Continues {
        record: FileRecord,
        /// Boxed: the hash state is large.
        point: Box<ScanPoint>,
        skip: u64,
    },
    /// What was committed of it is no longer its beginning.
    Changed { reason: String },
}

/// Why a file could not be identified (the next look tries again).
#[derive(Debug)]
pub(super) enum IdentifyError {
    Io(std::io::Error),
    Ledger(LookupError),
}

/// Identifies the file at `real`, found as `name`. `changed_in_run`: this run read the
/// file and saw it change before disposing of it (so a different beginning is a change
/// of that file, not a new delivery under its name).
pub(super) fn identify(
    ledger: &mut dyn FileLedger,
    real: &Path,
    name: &str,
    after_ingest: AfterIngest,
    changed_in_run: bool,
) -> Result<(Identity, FileScan), IdentifyError> {
    let by_name = ledger.by_name(name).map_err(IdentifyError::Ledger)?;
    let at = by_name.as_ref().map(|r| r.next_offset);
    let file = File::open(real).map_err(IdentifyError::Io)?;
    let scanned = scan(file, at).map_err(IdentifyError::Io)?;
    if let Some(record) = ledger
        .by_content(&scanned.hash)
        .map_err(IdentifyError::Ledger)?
    {
        if record.status != FileStatus::Partial {
            return Ok((Identity::Known(record), scanned));
        }
        // A partly committed file cut back to exactly what was committed: read on from
        // its end (nothing follows; it is then recorded as ingested).
        let file = File::open(real).map_err(IdentifyError::Io)?;
        let again = scan(file, Some(record.next_offset)).map_err(IdentifyError::Io)?;
        if let Some(point) = again.at.clone() {
            return Ok((
                Identity::Continues {
                    record,
                    point: Box::new(point),
                    skip: 0,
                },
                again,
            ));
        }
    }
    let identity = match by_name {
        None => Identity::New,
        Some(record) => continuation(record, &scanned, after_ingest, changed_in_run),
    };
    Ok((identity, scanned))
}

/// A file whose name has a record of committed bytes: does it continue them?
fn continuation(
    record: FileRecord,
    scanned: &FileScan,
    after_ingest: AfterIngest,
    changed_in_run: bool,
) -> Identity {
    let committed = format!(
        "{} bytes (lines before {}) were committed",
        record.next_offset, record.next_line
    );
    let Some(hash) = &record.hash else {
        // Left partial by state version 1, which recorded the hash of the whole file as
        // it was then, not of the bytes committed.
        return match (&scanned.at, scanned.hash.0 == record.id.0) {
            (Some(point), true) => Identity::Continues {
                point: Box::new(point.clone()),
                record,
                skip: 0,
            },
            _ => Identity::Changed {
                reason: format!(
                    "{committed} by an older sluice, and the file changed since; \
                     what was committed cannot be compared"
                ),
            },
        };
    };
    let point = match &scanned.at {
        Some(point) if &point.hash() == hash => point.clone(),
        _ if record.status == FileStatus::Ingested
            && after_ingest != AfterIngest::Keep
            && !changed_in_run =>
        {
            // The ingested file was archived or deleted: this is a new one of that name.
            return Identity::New;
        }
        Some(_) => {
            return Identity::Changed {
                reason: format!("{committed}, and they are no longer the start of the file"),
            }
        }
        None => {
            return Identity::Changed {
                reason: format!("{committed}, and the file is now {} bytes", scanned.len),
            }
        }
    };
    let ends_line = point.before.is_none_or(|b| b == b'\n' || b == b'\r');
    let skip = match point.after.as_slice() {
        _ if ends_line => 0,
        [] => 0,
        [b'\r', b'\n', ..] => 2,
        [b'\n' | b'\r', ..] => 1,
        _ => {
            return Identity::Changed {
                reason: format!(
                    "{committed}, the last of them without a line end, and that line was \
                     continued"
                ),
            }
        }
    };
    Identity::Continues {
        record,
        point: Box::new(point),
        skip,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use sluice_core::{FileHash, FileId};

    use super::*;

    fn hash(bytes: &[u8]) -> FileHash {
        FileHash(blake3::hash(bytes).to_hex().to_string())
    }

    fn record(name: &str, committed: &[u8], status: FileStatus, next_line: u64) -> FileRecord {
        FileRecord {
            id: FileId(format!("id-{name}")),
            hash: Some(hash(committed)),
            original_name: name.into(),
            status,
            next_offset: committed.len() as u64,
            next_line,
        }
    }

    /// Identifies `content` as file `f.csv` against `ledger`.
    fn identify_as(
        content: &[u8],
        mut ledger: Vec<FileRecord>,
        after: AfterIngest,
        changed_in_run: bool,
    ) -> Identity {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.csv");
        fs::write(&path, content).expect("write");
        identify(&mut ledger, &path, "f.csv", after, changed_in_run)
            .map(|(identity, _)| identity)
            .map_err(|e| format!("{e:?}"))
            .expect("identify")
    }

    const FIRST: &[u8] = b"id\n1\n2\n";

    #[test]
    fn a_file_no_record_names_is_new() {
        let other = record("other.csv", b"id\n9\n", FileStatus::Ingested, 3);
        let got = identify_as(FIRST, vec![other], AfterIngest::Keep, false);
        assert!(matches!(got, Identity::New), "{got:?}");
    }

    #[test]
    fn the_content_of_an_ingested_file_is_known_under_any_name() {
        let other = record("other.csv", FIRST, FileStatus::Ingested, 4);
        let got = identify_as(FIRST, vec![other], AfterIngest::Archive, false);
        assert!(matches!(got, Identity::Known(r) if r.original_name == "other.csv"));
    }

    #[test]
    fn a_file_that_begins_with_what_was_committed_continues_it() {
        let rec = record("f.csv", FIRST, FileStatus::Ingested, 4);
        let got = identify_as(b"id\n1\n2\n3\n", vec![rec], AfterIngest::Keep, false);
        match got {
            Identity::Continues { point, skip, .. } => {
                assert_eq!((point.offset, skip), (FIRST.len() as u64, 0));
                assert_eq!(point.hash(), hash(FIRST));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_line_end_after_an_unended_last_line_is_skipped_and_a_continuation_refused() {
        let rec = || vec![record("f.csv", b"id\n1\n2", FileStatus::Ingested, 3)];
        for (content, skip) in [(&b"id\n1\n2\n3\n"[..], 1), (b"id\n1\n2\r\n3\n", 2)] {
            match identify_as(content, rec(), AfterIngest::Keep, false) {
                Identity::Continues { skip: s, .. } => assert_eq!(s, skip),
                other => panic!("{other:?}"),
            }
        }
        let got = identify_as(b"id\n1\n23\n", rec(), AfterIngest::Keep, false);
        assert!(
            matches!(&got, Identity::Changed { reason } if reason.contains("continued")),
            "{got:?}"
        );
    }

    #[test]
    fn changed_committed_bytes_are_a_change_unless_the_file_was_disposed_of() {
        let rec = || vec![record("f.csv", FIRST, FileStatus::Ingested, 4)];
        let rewritten = b"id\n1\n5\n6\n";
        let got = identify_as(rewritten, rec(), AfterIngest::Keep, false);
        assert!(
            matches!(&got, Identity::Changed { reason } if reason.contains("no longer the start")),
            "{got:?}"
        );
        let got = identify_as(b"id\n", rec(), AfterIngest::Keep, false);
        assert!(
            matches!(&got, Identity::Changed { reason } if reason.contains("now 3 bytes")),
            "{got:?}"
        );
        // Archived or deleted: a new file of that name...
        let got = identify_as(rewritten, rec(), AfterIngest::Archive, false);
        assert!(matches!(got, Identity::New), "{got:?}");
        // ...unless this run saw that very file change before disposing of it.
        let got = identify_as(rewritten, rec(), AfterIngest::Archive, true);
        assert!(matches!(got, Identity::Changed { .. }), "{got:?}");
        // A partly committed file that changed is a change whatever after_ingest says.
        let partial = vec![record("f.csv", FIRST, FileStatus::Partial, 4)];
        let got = identify_as(rewritten, partial, AfterIngest::Delete, false);
        assert!(matches!(got, Identity::Changed { .. }), "{got:?}");
    }

    #[test]
    fn a_partial_file_of_state_version_1_resumes_only_if_unchanged() {
        let whole = b"id\n1\n2\n3\n";
        let v1 = || {
            vec![FileRecord {
                id: FileId(hash(whole).0),
                hash: None,
                original_name: "f.csv".into(),
                status: FileStatus::Partial,
                next_offset: FIRST.len() as u64,
                next_line: 4,
            }]
        };
        let got = identify_as(whole, v1(), AfterIngest::Archive, false);
        assert!(
            matches!(got, Identity::Continues { skip: 0, .. }),
            "{got:?}"
        );
        let got = identify_as(b"id\n1\n2\n3\n4\n", v1(), AfterIngest::Archive, false);
        assert!(
            matches!(&got, Identity::Changed { reason } if reason.contains("older sluice")),
            "{got:?}"
        );
    }

    #[test]
    fn a_quarantined_record_is_no_record_of_what_was_read_under_its_name() {
        let q = FileRecord {
            status: FileStatus::Quarantined {
                reason: "not text".into(),
            },
            ..record("f.csv", b"\0\0", FileStatus::Ingested, 1)
        };
        let got = identify_as(FIRST, vec![q], AfterIngest::Keep, false);
        assert!(matches!(got, Identity::New), "{got:?}");
    }
}
