//! What every Prometheus client library exports about its own process (`process_*`, as
//! client_golang's process collector names them), and `omen_build_info`: the version that
//! answers, so a dashboard can tell an upgrade from a regression.
//!
//! Read from `/proc/self` at each scrape (a handful of small reads); on a system without
//! it (not Linux) the process families are left out rather than reported as zero.
//!
//! Why not the `prometheus` crate's `process` feature: omen does not use that crate's
//! registry (see `exposition`), and the feature pulls in `procfs` and its dependencies for
//! the six numbers below.

use crate::exposition::{write_header, write_sample, Format, MetricType};

/// Writes `omen_build_info{component, version}` and the process families.
pub fn render(out: &mut String, component: &str, format: Format) {
    write_header(
        out,
        "omen_build_info",
        "The omen build that answers: 1, labelled with its version and component.",
        MetricType::Gauge,
    );
    write_sample(
        out,
        "omen_build_info",
        [
            ("component", component),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1.0,
    );
    if let Some(process) = Process::read() {
        process.render(out, format);
    }
}

/// One reading of the process' own figures.
#[derive(Debug, Clone, PartialEq)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    threads: f64,
}

impl Process {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text))?;
        // SAFETY: sysconf only reads system constants.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if ticks <= 0 || page <= 0 {
            return None;
        }
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| max_open_files(&text));
        let mut process = from_stat(&stat, ticks as f64, page as f64, boot_time)?;
        process.open_fds = open_fds;
        process.max_fds = max_fds;
        Some(process)
    }

    fn render(&self, out: &mut String, format: Format) {
        let family = match format {
            Format::OpenMetrics => "process_cpu_seconds",
            Format::Prometheus => "process_cpu_seconds_total",
        };
        write_header(
            out,
            family,
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
        );
        write_sample(out, "process_cpu_seconds_total", [], self.cpu_seconds);
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Some(self.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Some(self.virtual_bytes),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Some(self.start_time_seconds),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                Some(self.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                self.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                Some(self.threads),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                write_header(out, name, help, MetricType::Gauge);
                write_sample(out, name, [], value);
            }
        }
    }
}

/// The figures of a `/proc/<pid>/stat` line (proc(5)); open and max fds are left at 0.
fn from_stat(
    stat: &str,
    ticks_per_second: f64,
    page_bytes: f64,
    boot_time: f64,
) -> Option<Process> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses:
    // the fields after it start after its last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Process {
        cpu_seconds: (utime + stime) / ticks_per_second,
        threads: field(20)?,
        start_time_seconds: boot_time + field(22)? / ticks_per_second,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page_bytes,
        open_fds: 0.0,
        max_fds: None,
    })
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_cpu_memory_threads_and_start() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (omen (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2048 18446744073709551615";
        let process = from_stat(stat, 100.0, 4096.0, 1_700_000_000.0).unwrap();
        assert_eq!(process.cpu_seconds, 3.0);
        assert_eq!(process.threads, 7.0);
        assert_eq!(process.start_time_seconds, 1_700_000_010.0);
        assert_eq!(process.virtual_bytes, 123_456_789.0);
        assert_eq!(process.resident_bytes, 2048.0 * 4096.0);
        assert!(from_stat("4242 (truncated", 100.0, 4096.0, 0.0).is_none());
        assert!(from_stat("4242 (x) S 1 2", 100.0, 4096.0, 0.0).is_none());
    }

    #[test]
    fn limits_and_boot_time_are_read_from_their_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            max_open_files("Max open files unlimited unlimited files"),
            None
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1.7e9)
        );
    }

    #[test]
    fn this_process_reports_itself_in_both_formats() {
        let mut text = String::new();
        render(&mut text, "agent", Format::Prometheus);
        assert!(
            text.contains("omen_build_info{component=\"agent\",version=\""),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            for family in [
                "# TYPE process_cpu_seconds_total counter",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_start_time_seconds ",
                "process_threads ",
            ] {
                assert!(text.contains(family), "{family} in {text}");
            }
            let mut open = String::new();
            render(&mut open, "detector", Format::OpenMetrics);
            assert!(
                open.contains("# TYPE process_cpu_seconds counter"),
                "{open}"
            );
            assert!(open.contains("\nprocess_cpu_seconds_total "), "{open}");
        }
    }
}
