//! The standard `process_*` metrics every Prometheus client library exports (CPU time,
//! memory, file descriptors, start time), read from `/proc/self` at scrape time.
//!
//! prometheus-client has no process collector, and these few numbers are simple to read
//! on Linux, the only platform maas-flow runs on. On other systems nothing is exported.

use std::fmt::Write as _;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

/// Read `/proc/self/stat`, `/proc/self/fd`, `/proc/stat` and the fd limit; None when
/// `/proc` is not there or not as expected.
#[allow(unsafe_code)] // sysconf and getrlimit through libc: see the SAFETY comments.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // SAFETY: sysconf has no preconditions; it only reads system constants.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY)
        .then_some(limit.rlim_cur);
    parse(&stat, &boot, ticks, page, open_fds, max_fds)
}

/// The arithmetic of [`read`], apart from the files (so it can be tested).
pub fn parse(
    stat: &str,
    proc_stat: &str,
    ticks_per_second: i64,
    page_size: i64,
    open_fds: u64,
    max_fds: Option<u64>,
) -> Option<ProcessStats> {
    if ticks_per_second <= 0 || page_size <= 0 {
        return None;
    }
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let ticks = ticks_per_second as f64;
    let btime = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        start_time_seconds: btime as f64 + num(22)? as f64 / ticks,
        virtual_memory_bytes: num(23)?,
        resident_memory_bytes: num(24)?.saturating_mul(page_size as u64),
        open_fds,
        max_fds,
    })
}

/// The stats as OpenMetrics text (families without the `# EOF`).
pub fn render(out: &mut String) {
    let Some(s) = read() else {
        return;
    };
    let mut family = |name: &str, kind: &str, unit: &str, help: &str, sample: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        if !unit.is_empty() {
            let _ = writeln!(out, "# UNIT {name} {unit}");
        }
        out.push_str(&sample);
    };
    family(
        "process_cpu_seconds",
        "counter",
        "seconds",
        "Total user and system CPU time spent in seconds.",
        format!("process_cpu_seconds_total {}\n", s.cpu_seconds),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "bytes",
        "Resident memory size in bytes.",
        format!(
            "process_resident_memory_bytes {}\n",
            s.resident_memory_bytes
        ),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "bytes",
        "Virtual memory size in bytes.",
        format!("process_virtual_memory_bytes {}\n", s.virtual_memory_bytes),
    );
    family(
        "process_open_fds",
        "gauge",
        "",
        "Number of open file descriptors.",
        format!("process_open_fds {}\n", s.open_fds),
    );
    if let Some(max) = s.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "",
            "Maximum number of open file descriptors.",
            format!("process_max_fds {max}\n"),
        );
    }
    family(
        "process_start_time_seconds",
        "gauge",
        "seconds",
        "Start time of the process since unix epoch in seconds.",
        format!("process_start_time_seconds {}\n", s.start_time_seconds),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let stat = "4242 (maas flow) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 3000 18446744073709551615";
        let s = parse(
            stat,
            "cpu 1 2 3\nbtime 1700000000\n",
            100,
            4096,
            12,
            Some(1024),
        )
        .unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_memory_bytes, 123_456_789);
        assert_eq!(s.resident_memory_bytes, 3000 * 4096);
        assert_eq!(s.open_fds, 12);
    }

    #[test]
    fn nonsense_gives_nothing() {
        assert_eq!(parse("garbage", "btime 1\n", 100, 4096, 0, None), None);
        assert_eq!(parse("1 (x) S", "", 100, 4096, 0, None), None);
    }

    #[test]
    fn reads_this_process() {
        let s = read().expect("/proc is there on Linux");
        assert!(s.resident_memory_bytes > 0 && s.open_fds >= 3);
        assert!(s.start_time_seconds > 1.6e9);
    }
}
