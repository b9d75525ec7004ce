//! Human output: aligned tables, times, short ids.

use std::fmt::Write as _;

use serde::Serialize;

/// A table printed with aligned columns.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (missing cells are empty, extra cells ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table; `(none)` when it has no rows.
    pub fn render(&self) -> String {
        if self.rows.is_empty() {
            return "(none)\n".to_string();
        }
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
            let mut parts = Vec::with_capacity(n);
            for (i, w) in widths.iter().enumerate() {
                let c = cells.next().unwrap_or_default();
                if i + 1 == n {
                    parts.push(c);
                } else {
                    parts.push(format!("{c:<w$}"));
                }
            }
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(&mut out, &mut self.headers.iter().map(|h| h.to_string()));
        for r in &self.rows {
            line(&mut out, &mut r.iter().cloned());
        }
        out
    }

    /// The rows alone, aligned among themselves (no header, nothing when empty): what a
    /// command that follows a stream prints after the header.
    pub fn render_rows(&self) -> String {
        let text = if self.rows.is_empty() { String::new() } else { self.render() };
        text.lines().skip(1).map(|l| format!("{l}\n")).collect()
    }

    /// The header line alone.
    pub fn header(&self) -> String {
        format!("{}\n", self.headers.join("  "))
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        out!("{}", self.render());
    }
}

/// Prints a value as pretty JSON.
pub fn print_json<T: Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `2025-06-15T15:06:40Z` from ms since the epoch (UTC, proleptic Gregorian).
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// A duration in seconds as `1d 2h`, `3h 4m`, `5m 6s` or `7s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// How long ago `ms` was, relative to `now_ms`.
pub fn ago(ms: u64, now_ms: u64) -> String {
    format!("{} ago", duration(now_ms.saturating_sub(ms) / 1000))
}

/// The first `n` characters of `s`, with `…` if cut.
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

/// A score in hundredths as `8.50`.
pub fn score(hundredths: u16) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Bytes as `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match (unit, UNITS.get(unit)) {
        (0, _) => format!("{n} B"),
        (_, Some(u)) => format!("{v:.1} {u}"),
        (_, None) => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_750_000_000_000), "2025-06-15T15:06:40Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn tables_align_and_say_none_when_empty() {
        let mut t = Table::new(&["A", "LONGER"]);
        assert_eq!(t.render(), "(none)\n");
        t.row(vec!["xyz".into(), "1".into()]);
        t.row(vec!["a".into(), "22".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\na    22\n");
    }

    #[test]
    fn small_formatters() {
        assert_eq!(duration(3_725), "1h 2m");
        assert_eq!(short("abcdef", 3), "abc…");
        assert_eq!(score(850), "8.50");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
