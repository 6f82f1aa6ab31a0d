//! What Linux says about processes: CPU time (whole processes, or the threads of this
//! one by name), resident memory, and the open-file limit.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (a process's figure includes its
//! threads that already exited); memory is `VmRSS` from `/proc/PID/status`.

use std::collections::HashMap;

/// Where to read the CPU time of one side of a design.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// Threads of this process whose name starts with one of these prefixes.
    Threads(&'static [&'static str]),
    /// One process (all its threads).
    Process(u32),
    /// A process and its children (nginx's master and workers).
    Family(u32),
}

/// CPU clock ticks used so far, per thread or process id, as read by a [`Probe`].
#[derive(Debug, Clone, Default)]
pub struct CpuMark(HashMap<u32, u64>);

impl Probe {
    /// Read the CPU ticks now.
    pub fn mark(&self) -> CpuMark {
        let mut ticks = HashMap::new();
        match *self {
            Probe::Threads(prefixes) => {
                for (tid, text) in stats("/proc/self/task") {
                    if stat_name(&text).is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p))) {
                        ticks.insert(tid, stat_ticks(&text).unwrap_or(0));
                    }
                }
            }
            Probe::Process(pid) => {
                if let Some(t) = read_stat(pid).as_deref().and_then(stat_ticks) {
                    ticks.insert(pid, t);
                }
            }
            Probe::Family(pid) => {
                for (id, text) in stats("/proc") {
                    let parent = stat_field(&text, 4).and_then(|p| p.parse::<u32>().ok());
                    if id == pid || parent == Some(pid) {
                        ticks.insert(id, stat_ticks(&text).unwrap_or(0));
                    }
                }
            }
        }
        CpuMark(ticks)
    }
}

impl CpuMark {
    /// CPU seconds used between `earlier` and this mark, by what is still there now
    /// (a thread or process that exited in between is left out, never negative).
    pub fn since(&self, earlier: &CpuMark) -> f64 {
        let ticks: u64 = self
            .0
            .iter()
            .map(|(id, &t)| t.saturating_sub(earlier.0.get(id).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / ticks_per_second()
    }
}

fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// `(id, stat line)` of every numeric entry of `dir` (`/proc` or a task directory).
fn stats(dir: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(e.path().join("stat")).ok()?;
            Some((id, text))
        })
        .collect()
}

/// Resident memory of a process, KiB (`VmRSS`); 0 when unreadable.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Raise this process's open-file limit to its hard limit (children inherit it).
/// Returns the soft limit now in force, and why it could not be raised if it was not.
pub fn raise_open_files() -> (u64, Option<String>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if limit.maximum == limit.current {
        return (current, None);
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => (limit.maximum.unwrap_or(u64::MAX), None),
        Err(e) => (
            current,
            Some(format!("setrlimit(RLIMIT_NOFILE) refused: {e}")),
        ),
    }
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second().max(1) as f64
}

/// The `comm` field: between the first `(` and the last `)` (it may hold spaces).
fn stat_name(text: &str) -> Option<&str> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    text.get(open + 1..close)
}

/// Field `n` of a stat line (1-based as in proc(5)); fields after `comm` only.
fn stat_field(text: &str, n: usize) -> Option<&str> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    // After `comm` (field 2) comes field 3 (state).
    rest.split_ascii_whitespace().nth(n.checked_sub(3)?)
}

/// `utime + stime` (fields 14 and 15), in clock ticks.
fn stat_ticks(text: &str) -> Option<u64> {
    let utime: u64 = stat_field(text, 14)?.parse().ok()?;
    let stime: u64 = stat_field(text, 15)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_spaces_in_the_name() {
        let line = "1234 (bench master) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(stat_name(line), Some("bench master"));
        assert_eq!(stat_field(line, 4), Some("1"));
        assert_eq!(stat_ticks(line), Some(300));
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid) > 0);
        let before = Probe::Process(pid).mark();
        assert_eq!(before.0.len(), 1);
        assert!(Probe::Process(pid).mark().since(&before) >= 0.0);
        assert!(!Probe::Family(pid).mark().0.is_empty());
    }
}
