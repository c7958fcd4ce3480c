//! Every metric the sources emit, in one place (names are documented in the README's
//! metrics table, which a test keeps true). Labels are low-cardinality: never a file name.

use metrics::counter;

/// Input bytes whose rows (or dead letters) were committed.
pub fn bytes_ingested(source: &str, bytes: u64) {
    counter!("sluice_bytes_ingested_total", "source" => source.to_string()).increment(bytes);
}

/// Makes every per-source series exist (at zero) from the start, so that rates and
/// alerts see a series before the first event.
pub fn register(source: &str) {
    for name in [
        "sluice_bytes_ingested_total",
        "sluice_files_ingested_total",
        "sluice_files_duplicate_total",
        "sluice_files_quarantined_total",
        "sluice_files_refused_total",
    ] {
        counter!(name, "source" => source.to_string()).increment(0);
    }
}

/// A file's last chunk was committed.
pub fn file_ingested(source: &str) {
    counter!("sluice_files_ingested_total", "source" => source.to_string()).increment(1);
}

/// A file had the content of an already ingested file.
pub fn file_duplicate(source: &str) {
    counter!("sluice_files_duplicate_total", "source" => source.to_string()).increment(1);
}

/// A file was recorded as not CSV text and moved to quarantine.
pub fn file_quarantined(source: &str) {
    counter!("sluice_files_quarantined_total", "source" => source.to_string()).increment(1);
}

/// A path was refused (a symlink leading outside the watched directory).
pub fn file_refused(source: &str) {
    counter!("sluice_files_refused_total", "source" => source.to_string()).increment(1);
}
