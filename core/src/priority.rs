//! Scheduling priority of sluice's helper threads.
//!
//! The commit thread is sluice's bottleneck: every batch passes through its one DuckDB
//! transaction. The threads that feed it (sources reading and parsing, the Parquet writer)
//! can only run ahead of it by a bounded queue, yet on a small machine they compete with it
//! for the same cores, and the kernel shares a core equally among runnable threads. Measured
//! on 2 cores (`/proc/<pid>/task/<tid>/schedstat`, CSV bench), the commit thread ran 10 s and
//! waited 3.1-3.4 s more for a core held by its own producers. Producer threads therefore
//! lower their own priority (a nice value 10 above the process's, so a unit file's `Nice=`
//! still applies): when a core is free they run as before, when it is not the commit goes
//! first. With it the commit thread waited 1.5-1.7 s and the bench ran 15% faster; nice 5
//! gained about half as much (BENCHMARKS.md). The Parquet writer sits between the two
//! ([`WRITER_NICE`]): the commit waits for its file.

use std::io;

/// How much producer threads add to the process's nice value.
pub const PRODUCER_NICE: i32 = 10;

/// How much a thread the commit waits for adds (the Parquet writer): below the commit
/// thread, above the sources. At the sources' nice the commit waited for the batch's
/// Parquet file 30 ms per 122,880-row Kafka batch (median), while a source thread took
/// the other core to parse the next batch.
pub const WRITER_NICE: i32 = 5;

/// How much SQL clients' query threads add: the most there is. Their queries come after
/// ingestion: after the commit and after the sources that feed it (on 2 cores, with four
/// clients scanning a mart in a loop, query threads at the producers' nice left ingestion
/// 0.66x of its idle throughput; BENCHMARKS.md, *Live SQL*).
pub const QUERY_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority by [`PRODUCER_NICE`] (Linux nice values are
/// per thread). Raising a nice value needs no privilege; failing leaves the thread as it was.
pub fn yield_to_committer() -> io::Result<()> {
    lower_priority(PRODUCER_NICE)
}

/// Lowers the calling thread's priority by [`WRITER_NICE`]: after the commit thread,
/// before the sources.
pub fn yield_to_committer_before_sources() -> io::Result<()> {
    lower_priority(WRITER_NICE)
}

/// Lowers the calling thread's priority by [`QUERY_NICE`]: it runs when ingestion leaves a
/// core free.
pub fn yield_to_ingestion() -> io::Result<()> {
    lower_priority(QUERY_NICE)
}

fn lower_priority(by: i32) -> io::Result<()> {
    let current = rustix::process::getpriority_process(None)?;
    rustix::process::setpriority_process(None, (current + by).min(19))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        rustix::process::getpriority_process(None).unwrap()
    }

    /// The nice value of a thread that called `lower`, and the process's before it.
    fn niced_by(lower: fn() -> io::Result<()>) -> (i32, i32) {
        let before = nice();
        let inside = std::thread::spawn(move || {
            lower().unwrap();
            nice()
        })
        .join()
        .unwrap();
        (before, inside)
    }

    #[test]
    fn a_producer_thread_is_niced_and_the_rest_of_the_process_is_not() {
        let (before, inside) = niced_by(yield_to_committer);
        assert_eq!(inside, (before + PRODUCER_NICE).min(19));
        assert_eq!(nice(), before);
    }

    #[test]
    fn a_writer_thread_is_niced_between_the_committer_and_producers() {
        let (before, inside) = niced_by(yield_to_committer_before_sources);
        assert_eq!(inside, (before + WRITER_NICE).min(19));
        assert!(inside > before || before == 19);
        assert!(inside <= (before + PRODUCER_NICE).min(19));
    }

    #[test]
    fn a_query_thread_is_niced_below_producers() {
        let (before, inside) = niced_by(yield_to_ingestion);
        assert_eq!(inside, (before + QUERY_NICE).min(19));
        assert!(inside >= (before + PRODUCER_NICE).min(19));
    }
}
