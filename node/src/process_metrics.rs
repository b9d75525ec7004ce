//! `process_*` metrics (the Prometheus client conventions: RSS, CPU, file descriptors and
//! their limit, threads, start time), `palisade_build_info` and the store's size on disk,
//! read from `/proc/self` at each scrape (a collector: nothing runs between scrapes).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second
/// for user space on every architecture it supports.
const USER_HZ: f64 = 100.0;

/// Build facts embedded by `build.rs`.
pub struct BuildInfo;

impl BuildInfo {
    /// Package version.
    pub const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    /// Short git commit (`-dirty` when built from modified sources; `unknown` outside git).
    pub const COMMIT: &'static str = env!("PALISADE_COMMIT");
    /// Build date (UTC).
    pub const DATE: &'static str = env!("PALISADE_BUILD_DATE");
    /// Target triple.
    pub const TARGET: &'static str = env!("PALISADE_TARGET");
    /// Cargo profile (`release`, `debug`).
    pub const PROFILE: &'static str = env!("PALISADE_PROFILE");
}

#[derive(Debug)]
struct ProcessCollector {
    start_time_secs: f64,
    store: palisade_store::Store,
}

/// Registers the collector in `registry`.
pub fn register(registry: &mut Registry, store: palisade_store::Store) {
    let start_time_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    registry.register_collector(Box::new(ProcessCollector { start_time_secs, store }));
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub struct ProcStats {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors.
    pub max_fds: u64,
}

impl ProcStats {
    /// Reads the stats of the running process; missing files leave zeros.
    pub fn read() -> ProcStats {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        ProcStats { open_fds, ..ProcStats::parse(&status, &stat, &limits) }
    }

    fn parse(status: &str, stat: &str, limits: &str) -> ProcStats {
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // Fields after the command name (which may hold spaces, hence the last ')'):
        // state is field 3, utime 14, stime 15 (1-based in proc(5)).
        let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let cpu_secs = (ticks(11) + ticks(12)) as f64 / USER_HZ;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
            .unwrap_or(0);
        ProcStats {
            rss_bytes: kib("VmRSS:") * 1024,
            virtual_bytes: kib("VmSize:") * 1024,
            threads: kib("Threads:"),
            cpu_secs,
            open_fds: 0,
            max_fds,
        }
    }
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let p = ProcStats::read();
        gauge(&mut e, "process_resident_memory_bytes", "Resident memory size in bytes", p.rss_bytes)?;
        gauge(&mut e, "process_virtual_memory_bytes", "Virtual memory size in bytes", p.virtual_bytes)?;
        gauge(&mut e, "process_open_fds", "Open file descriptors", p.open_fds)?;
        gauge(&mut e, "process_max_fds", "Limit of open file descriptors (soft)", p.max_fds)?;
        gauge(&mut e, "process_threads", "OS threads", p.threads)?;
        let cpu = ConstCounter::new(p.cpu_secs);
        cpu.encode(e.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let start = ConstGauge::new(self.start_time_secs);
        start.encode(e.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds",
            None,
            start.metric_type(),
        )?)?;
        let size = self.store.size_on_disk().unwrap_or(0);
        gauge(&mut e, "palisade_store_size_bytes", "Bytes the store's files take on disk", size)?;
        let info = prometheus_client::metrics::info::Info::new(vec![
            ("version", BuildInfo::VERSION),
            ("commit", BuildInfo::COMMIT),
            ("build_date", BuildInfo::DATE),
            ("target", BuildInfo::TARGET),
            ("profile", BuildInfo::PROFILE),
        ]);
        info.encode(e.encode_descriptor(
            "palisade_build",
            "Build facts of this binary",
            None,
            info.metric_type(),
        )?)
    }
}

/// The classic Prometheus text format (0.0.4) from OpenMetrics text: for scrapers and tools
/// that ask for it (`Accept: text/plain;version=0.0.4`, `promtool check metrics`). Counters are
/// typed under their `_total` sample name, `info` families become gauges, `# UNIT` and
/// `# EOF` lines go.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut renamed: Vec<(String, String)> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.rsplit_once(' ') {
                Some((name, "counter")) => renamed.push((name.to_string(), format!("{name}_total"))),
                Some((name, "info")) => renamed.push((name.to_string(), format!("{name}_info"))),
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# TYPE ")
            .map(|r| ("# TYPE ", r))
            .or(line.strip_prefix("# HELP ").map(|r| ("# HELP ", r)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let new_name = renamed.iter().find(|(n, _)| n == name).map_or(name, |(_, new)| new.as_str());
                let tail = if prefix == "# TYPE " && tail == "info" { "gauge" } else { tail };
                out.push_str(&format!("{prefix}{new_name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let status = "Name:\tpalisade\nVmSize:\t  204800 kB\nVmRSS:\t   51200 kB\nThreads:\t12\n";
        let stat = "4242 (pali sade) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 12 0 100 0";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let p = ProcStats::parse(status, stat, limits);
        assert_eq!(p.rss_bytes, 51200 * 1024);
        assert_eq!(p.virtual_bytes, 204800 * 1024);
        assert_eq!(p.threads, 12);
        assert!((p.cpu_secs - 4.0).abs() < 1e-9, "{}", p.cpu_secs);
        assert_eq!(p.max_fds, 1024);
        let live = ProcStats::read();
        assert!(live.rss_bytes > 0 && live.open_fds > 0 && live.threads > 0 && live.max_fds > 0, "{live:?}");
    }

    #[test]
    fn openmetrics_becomes_classic_text() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP b_bytes Bytes.\n# TYPE b_bytes gauge\n# UNIT b_bytes bytes\nb_bytes 7\n\
                  # HELP c_build Build.\n# TYPE c_build info\nc_build_info{v=\"1\"} 1\n# EOF\n";
        let classic = to_classic_text(om);
        assert_eq!(
            classic,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP b_bytes Bytes.\n# TYPE b_bytes gauge\nb_bytes 7\n\
             # HELP c_build_info Build.\n# TYPE c_build_info gauge\nc_build_info{v=\"1\"} 1\n"
        );
    }
}
