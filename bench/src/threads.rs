//! Where a child's CPU goes, by thread: sluice names its threads (`committer`,
//! `source-<name>`, `parquet`, `lake`, `lake-io`), librdkafka names its own (`rdk:main`,
//! `rdk:broker1`, ...), and DuckDB's workers keep the process's name. Sampled from
//! `/proc/<pid>/task/*/stat` while the child runs (a thread that ends keeps its last
//! sample, at most one sampling interval old).

use std::collections::{BTreeMap, HashMap};

/// The latest CPU time seen per thread of one process.
#[derive(Debug, Default)]
pub struct ThreadCpu {
    /// Per thread id: its name and CPU seconds (user + system).
    seen: HashMap<u32, (String, f64)>,
}

impl ThreadCpu {
    /// Reads every thread of `pid` now (a process that is gone reads as nothing).
    pub fn sample(&mut self, pid: u32) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(thread) = read_stat(&task.path().join("stat")) {
                self.seen.insert(tid, thread);
            }
        }
    }

    /// CPU seconds per thread name, digits dropped (`rdk:broker1` and `rdk:broker2` are
    /// `rdk:broker`), largest first.
    pub fn by_name(&self) -> Vec<(String, f64)> {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (name, secs) in self.seen.values() {
            let name: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
            *sums.entry(name).or_default() += secs;
        }
        let mut sums: Vec<_> = sums.into_iter().collect();
        sums.sort_by(|a, b| b.1.total_cmp(&a.1));
        sums
    }
}

/// A thread's (or a process's) name and CPU seconds from its `stat` file.
pub fn read_stat(path: &std::path::Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // `pid (comm) state ...`: the name may hold spaces and parentheses; it ends at the
    // last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name, in
    // USER_HZ, which Linux fixes at 100 for user space.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks / 100.0))
}

/// `by_name` as one line: `committer 0.99, source-orders 1.16, ...`.
pub fn describe(threads: &[(String, f64)]) -> String {
    let parts: Vec<String> = threads
        .iter()
        .filter(|(_, secs)| *secs >= 0.01)
        .map(|(name, secs)| format!("{name} {secs:.2}"))
        .collect();
    parts.join(", ")
}
