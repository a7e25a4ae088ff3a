//! The latency figure (`--latency-figure 20:301,100:2000`): for each
//! (latency per request, extra paths) point, deployd against the limit
//! (`nix copy --from` the cache on every host, then the switch) and against
//! the floor, in one run.
//!
//! The floor is what no fetch can beat on that link: the bytes the cache
//! sends for one closure (its compressed files) over the link, plus one
//! round trip per level of the closure's depth (a path's references are
//! known only once its narinfo came; see [`super::closure_shape`]). The
//! link is `--bandwidth-mbps` when given, else measured before the cache
//! is slowed: the fastest of three GETs of one large body by one host,
//! with no latency. The floor leaves out the switch, the last NAR's own
//! round trip and the hosts sharing the machine: it is a floor, not a goal.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use super::closure_shape::ClosureShape;
use super::fleet::BenchFleet;
use super::report::{Figure, Spread};
use super::ways::Way;

/// Bytes of the body the link is measured with.
const PROBE_BYTES: usize = 64 * 1024 * 1024;
/// Its file, in the cache's folder while it is measured.
const PROBE_FILE: &str = "link-probe";
/// GETs of it; the fastest is the link's speed.
const PROBE_TRIES: usize = 3;
/// Megabytes of a point that names none: a sixth of a megabyte a path, at
/// most this many (50 MB for 301 paths, 100 MB for 2,000).
const MAX_DEFAULT_MEGABYTES: u64 = 100;

/// One point of the figure: `MS:PATHS` or `MS:PATHS:MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyPoint {
    /// Milliseconds the cache waits before answering each request.
    pub latency_ms: u64,
    /// Extra paths in each closure (as `--paths`).
    pub paths: u32,
    /// Megabytes of random bytes in them, all together.
    pub megabytes: u64,
}

impl FromStr for LatencyPoint {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let fields: Vec<&str> = text.split(':').collect();
        let number = |field: &str, what: &str| -> Result<u64> {
            field
                .trim()
                .parse()
                .with_context(|| format!("{what} in {text:?} (MS:PATHS or MS:PATHS:MB)"))
        };
        let (latency, paths, megabytes) = match fields[..] {
            [latency, paths] => (latency, paths, None),
            [latency, paths, megabytes] => (latency, paths, Some(megabytes)),
            _ => bail!("{text:?} is not MS:PATHS or MS:PATHS:MB"),
        };
        let paths = u32::try_from(number(paths, "paths")?).context("too many paths")?;
        ensure!(paths > 0, "{text:?}: at least one path");
        let megabytes = match megabytes {
            Some(megabytes) => number(megabytes, "megabytes")?,
            None => (u64::from(paths) / 6).clamp(1, MAX_DEFAULT_MEGABYTES),
        };
        Ok(LatencyPoint {
            latency_ms: number(latency, "milliseconds")?,
            paths,
            megabytes,
        })
    }
}

/// How fast the link from the cache to a host is, and how it was known.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Bytes per second.
    pub bytes_per_second: f64,
    /// Measured (true) or `--bandwidth-mbps` (false).
    pub measured: bool,
}

/// One point, measured.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// What was asked.
    pub point: LatencyPoint,
    /// One host's closure, from the cache's narinfos.
    pub shape: ClosureShape,
    /// The link the floor assumes.
    pub link: Link,
    /// Both ways' rounds (their own table, CPU by part and deployd's
    /// timeline, is printed after the figure's).
    pub figure: Figure,
}

impl LatencyRow {
    /// The floor, in seconds: the closure's bytes over the link plus its
    /// depth times the round trip.
    pub fn floor_s(&self) -> f64 {
        let bytes = self.shape.file_bytes as f64 / self.link.bytes_per_second.max(1.0);
        let round_trips = self.shape.depth as f64 * self.point.latency_ms as f64 / 1000.0;
        bytes + round_trips
    }

    fn wall(&self, way: Way) -> Option<Spread> {
        let runs = self.figure.ways.iter().find(|runs| runs.way == way)?;
        Spread::of(runs.runs.iter().map(|usage| usage.wall))
    }
}

/// Measures the link from the cache to the fleet's first host: the fastest
/// of [`PROBE_TRIES`] GETs of a [`PROBE_BYTES`] body, the cache unslowed.
/// The body is removed afterwards, also on failure.
pub fn measure_link(fleet: &BenchFleet) -> Result<Link> {
    let file = fleet.lab().cache_dir().join(PROBE_FILE);
    std::fs::write(&file, vec![0_u8; PROBE_BYTES])
        .with_context(|| format!("writing {}", file.display()))?;
    let measured = probe(fleet);
    let removed = std::fs::remove_file(&file);
    let bytes_per_second = measured?;
    removed.with_context(|| format!("removing {}", file.display()))?;
    eprintln!(
        "bench: the link from the cache to a host: {:.0} MB/s",
        bytes_per_second / 1e6
    );
    Ok(Link {
        bytes_per_second,
        measured: true,
    })
}

fn probe(fleet: &BenchFleet) -> Result<f64> {
    let host = fleet.lab().hosts().first().context("no host")?;
    let url = format!("{}/{PROBE_FILE}", fleet.lab().cache_url());
    let mut fastest: f64 = 0.0;
    for _ in 0..PROBE_TRIES {
        let output = host.run(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{time_total}",
            &url,
        ])?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (size, time) = parse_probe(&text)?;
        ensure!(
            size == PROBE_BYTES as u64,
            "the probe got {size} bytes of {PROBE_BYTES}"
        );
        fastest = fastest.max(size as f64 / time.as_secs_f64().max(1e-6));
    }
    Ok(fastest)
}

/// curl's `%{size_download} %{time_total}`.
fn parse_probe(text: &str) -> Result<(u64, Duration)> {
    let mut words = text.split_whitespace();
    let size = words
        .next()
        .context("no size")?
        .parse()
        .context("the size")?;
    let seconds: f64 = words
        .next()
        .context("no time")?
        .parse()
        .context("the time")?;
    ensure!(seconds.is_finite() && seconds >= 0.0, "a time of {seconds}");
    Ok((size, Duration::from_secs_f64(seconds)))
}

/// The figure's table: one line per point with the closure's size and
/// depth, deployd's and `nix copy`'s wall times (medians and spreads), the
/// floor and deployd's ratios to both.
pub fn table(rows: &[LatencyRow], conditions: &str) -> String {
    let mut text = String::new();
    let first = rows.first();
    let _ = writeln!(
        text,
        "latency: {} hosts, deployd against nix copy --from (the limit) and the floor, {conditions}, {} rounds",
        first.map_or(0, |row| row.figure.hosts),
        first
            .and_then(|row| row.figure.ways.first())
            .map_or(0, |runs| runs.runs.len()),
    );
    let _ = writeln!(
        text,
        "{:>5} {:>6} {:>7} {:>5} {:>9} {:>15} {:>10} {:>15} {:>7} {:>10} {:>7}",
        "ms",
        "paths",
        "MB",
        "depth",
        "deployd s",
        "(min-max)",
        "nix-copy s",
        "(min-max)",
        "floor s",
        "x nix-copy",
        "x floor"
    );
    for row in rows {
        let (Some(deployd), Some(copy)) = (row.wall(Way::Deployd), row.wall(Way::Limit)) else {
            continue;
        };
        let floor = row.floor_s();
        let ratio = |value: f64, of: f64| {
            if of > 0.0 {
                format!("{:.2}", value / of)
            } else {
                "-".to_owned()
            }
        };
        let _ = writeln!(
            text,
            "{:>5} {:>6} {:>7.1} {:>5} {:>9.2} {:>15} {:>10.2} {:>15} {:>7.2} {:>10} {:>7}",
            row.point.latency_ms,
            row.shape.paths,
            row.shape.nar_bytes as f64 / 1e6,
            row.shape.depth,
            deployd.median,
            format!("({:.2}-{:.2})", deployd.min, deployd.max),
            copy.median,
            format!("({:.2}-{:.2})", copy.min, copy.max),
            floor,
            ratio(deployd.median, copy.median),
            ratio(deployd.median, floor),
        );
    }
    let link = first.map(|row| row.link);
    let _ = writeln!(
        text,
        "MB: one closure's NAR size; depth: its longest chain of references, in paths; \
         floor: the bytes the cache sends for one closure over the link ({:.0} MB/s, {}) \
         plus depth x latency; the ways' times hold the switch, the floor does not.",
        link.map_or(0.0, |link| link.bytes_per_second / 1e6),
        if link.is_some_and(|link| link.measured) {
            "measured: one body to one host, no latency"
        } else {
            "--bandwidth-mbps"
        }
    );
    text
}

#[cfg(test)]
mod tests {
    use super::super::cpu::Usage;
    use super::super::fleet::ClosureSize;
    use super::super::report::WayRuns;
    use super::*;

    #[test]
    fn points_read_with_or_without_megabytes() {
        let point: LatencyPoint = "20:301".parse().expect("a point");
        assert_eq!(
            point,
            LatencyPoint {
                latency_ms: 20,
                paths: 301,
                megabytes: 50
            }
        );
        let point: LatencyPoint = "100:2000".parse().expect("a point");
        assert_eq!(point.megabytes, 100);
        let point: LatencyPoint = "5:3:2".parse().expect("a point");
        assert_eq!((point.latency_ms, point.paths, point.megabytes), (5, 3, 2));
        assert_eq!("5:3".parse::<LatencyPoint>().expect("a point").megabytes, 1);
        for bad in ["20", "20:x", "20:0", "1:2:3:4", "-1:3", ""] {
            assert!(bad.parse::<LatencyPoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn curls_numbers_are_read() {
        let (size, time) = parse_probe("67108864 0.052311").expect("numbers");
        assert_eq!(size, 67_108_864);
        assert_eq!(time, Duration::from_secs_f64(0.052311));
        assert!(parse_probe("").is_err());
        assert!(parse_probe("12 nan").is_err());
    }

    fn runs(way: Way, walls: &[f64]) -> WayRuns {
        WayRuns {
            way,
            runs: walls
                .iter()
                .map(|&wall| Usage {
                    wall: Duration::from_secs_f64(wall),
                    ..Usage::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_table_gives_the_floor_and_both_ratios() {
        let row = LatencyRow {
            point: "100:2000".parse().expect("a point"),
            shape: ClosureShape {
                paths: 2006,
                nar_bytes: 100_000_000,
                file_bytes: 100_000_000,
                depth: 12,
            },
            link: Link {
                bytes_per_second: 50_000_000.0,
                measured: true,
            },
            figure: Figure {
                hosts: 3,
                closure: ClosureSize {
                    paths: 2006,
                    bytes: 100_000_000,
                },
                ways: vec![
                    runs(Way::Limit, &[300.0, 280.0]),
                    runs(Way::Deployd, &[30.0, 34.0]),
                ],
                deployd_timelines: Vec::new(),
                pull: None,
            },
        };
        // 100 MB at 50 MB/s, plus 12 x 100 ms.
        assert!((row.floor_s() - 3.2).abs() < 1e-9, "{}", row.floor_s());
        let table = table(&[row], "cache unpaced");
        assert!(table.starts_with("latency: 3 hosts"), "{table}");
        let line = table.lines().nth(2).expect("a row");
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                "100",
                "2006",
                "100.0",
                "12",
                "32.00",
                "(30.00-34.00)",
                "290.00",
                "(280.00-300.00)",
                "3.20",
                "0.11",
                "10.00"
            ]
        );
        assert!(table.contains("50 MB/s, measured"), "{table}");
    }
}
