//! `lab bench-fanout`: how long, and how much CPU, getting one already-built
//! system onto every host of a lab takes, five ways (see [`ways`]), measured
//! in one run so that the machine's noise falls on every way alike: the ways
//! interleaved in every round (their order rotated from round to round),
//! every host's store emptied before each, the medians and spreads of the
//! rounds printed with each way's ratio to the limit's.
//!
//! A first figure deploys a closure of `--paths` paths and `--megabytes` to
//! `--hosts` hosts; a second one (`--scale 10,50,100`) deploys a one-path
//! closure to labs of those sizes, per host. The pull way (opt-in) adds a
//! table of its time against the hosts' poll interval. A third one
//! (`--latency-figure 20:301,100:2000`, see [`latency`]) sets deployd
//! against `nix copy --from` and against the floor at each latency and
//! closure. Each lab is taken down afterwards, also on failure, Ctrl-C or
//! SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use deployd_lab::http::Pace;
use deployd_lab::Lab;

mod closure_shape;
mod cpu;
mod fleet;
mod interrupt;
mod latency;
mod report;
mod timeline;
mod ways;

use cpu::CpuMeter;
use fleet::{BenchFleet, FleetSpec};
use latency::{LatencyPoint, LatencyRow, Link};
use report::{Figure, PullFigure, WayRuns};
pub use ways::Way;

/// Bytes in the scale figure's one extra path.
const SCALE_BYTES_PER_PATH: u64 = 100_000;

/// Options of `lab bench-fanout`.
#[derive(Debug, clap::Args)]
pub struct BenchOptions {
    /// Hosts of the first figure.
    #[arg(long, default_value_t = 20)]
    pub hosts: usize,
    /// Extra store paths in each host's closure (beside the toy system's
    /// own nine).
    #[arg(long, default_value_t = 300)]
    pub paths: u32,
    /// Megabytes of random bytes in those paths, all together.
    #[arg(long, default_value_t = 200)]
    pub megabytes: u64,
    /// The levels the extra paths are arranged in, each path referencing
    /// two of the level below, as libraries do (1: a flat closure; at most
    /// one level a path).
    #[arg(long, default_value_t = 10)]
    pub levels: u32,
    /// Milliseconds the cache waits before answering each request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// The cache's bandwidth, in megabits per second for each response
    /// (default: unlimited).
    #[arg(long)]
    pub bandwidth_mbps: Option<u64>,
    /// Rounds; each way runs once in every round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The ways to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "limit,deployd,ssh-parallel,ssh-sequential"
    )]
    pub ways: Vec<Way>,
    /// The numbers of hosts of the scale figure (a one-path closure),
    /// comma-separated, e.g. 10,50,100; none by default.
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<usize>,
    /// Not the fan-out figure, only the scale figure (and the latency
    /// figure if it is asked for too).
    #[arg(long, requires = "scale", conflicts_with = "latency_only")]
    pub scale_only: bool,
    /// The points of the latency figure, comma-separated, each
    /// `MS:PATHS` or `MS:PATHS:MB` (latency per request, extra paths,
    /// megabytes: by default a sixth of a megabyte a path, at most 100),
    /// e.g. 20:301,100:2000; none by default.
    #[arg(long, value_delimiter = ',')]
    pub latency_figure: Vec<LatencyPoint>,
    /// Hosts of the latency figure.
    #[arg(long, default_value_t = 3)]
    pub latency_hosts: usize,
    /// Rounds of the latency figure (limit and deployd once each a round).
    #[arg(long, default_value_t = 2)]
    pub latency_rounds: usize,
    /// Not the fan-out figure, only the latency figure (and the scale
    /// figure if `--scale` asks for it too: both from one run).
    #[arg(long, requires = "latency_figure")]
    pub latency_only: bool,
    /// How often the hosts poll their channel, in seconds, for the pull
    /// way (`[pull] interval_s`; each wait is drawn between 0.8 and 1.2
    /// times it).
    #[arg(long, default_value_t = 10)]
    pub pull_interval_s: u64,
}

impl BenchOptions {
    /// How the cache answers during the timed deploys.
    fn pace(&self) -> Pace {
        self.pace_with(self.latency_ms)
    }

    /// The cache's pace with `latency_ms` per request.
    fn pace_with(&self, latency_ms: u64) -> Pace {
        Pace {
            bytes_per_second: self.bandwidth_mbps.map(|mbps| mbps * 1_000_000 / 8),
            latency_per_request: Duration::from_millis(latency_ms),
            cut_first_nars: 0,
        }
    }

    /// The cache's bandwidth, in words.
    fn bandwidth(&self) -> String {
        self.bandwidth_mbps.map_or("unlimited".to_owned(), |mbps| {
            format!("{mbps} Mbit/s per response")
        })
    }

    /// The cache's pace, in words.
    fn conditions(&self) -> String {
        format!(
            "cache latency {} ms per request, bandwidth {}",
            self.latency_ms,
            self.bandwidth()
        )
    }
}

/// Runs the benchmark in `dir` (replacing any lab there) and prints its
/// tables on stdout; progress goes to stderr.
pub fn run(dir: &Path, lab_binary: PathBuf, options: &BenchOptions) -> Result<()> {
    if options.rounds == 0 || options.latency_rounds == 0 {
        bail!("--rounds and --latency-rounds must be at least 1");
    }
    if options.levels == 0 {
        bail!("--levels must be at least 1");
    }
    if options.pull_interval_s == 0 {
        bail!("--pull-interval-s must be at least 1");
    }
    let ways = ways::distinct(&options.ways);
    if ways.is_empty() {
        bail!("--ways names no way");
    }
    interrupt::take_labs_down_on_signal()?;
    if dir.join("lab.json").exists() {
        eprintln!("bench: taking down the lab already in {}", dir.display());
        Lab::open(dir, lab_binary.clone())?.down()?;
    }
    if !options.scale_only && !options.latency_only {
        let spec = FleetSpec {
            hosts: options.hosts,
            paths: options.paths,
            bytes_per_path: options.megabytes * 1_000_000 / u64::from(options.paths.max(1)),
            levels: options.levels,
            pull_interval_s: options.pull_interval_s,
        };
        let figure = measure(dir, lab_binary.clone(), spec, &ways, options)?;
        println!("{}", report::fleet_table(&figure, &options.conditions()));
    }
    if !options.scale.is_empty() {
        let mut figures = Vec::new();
        for &hosts in &options.scale {
            let spec = FleetSpec {
                hosts,
                paths: 1,
                bytes_per_path: SCALE_BYTES_PER_PATH,
                levels: 1,
                pull_interval_s: options.pull_interval_s,
            };
            figures.push(measure(dir, lab_binary.clone(), spec, &ways, options)?);
        }
        println!("{}", report::scale_table(&figures, &options.conditions()));
        // Each size's CPU time by part, to tell push's share from the hosts'.
        for figure in &figures {
            println!("{}", report::fleet_table(figure, &options.conditions()));
        }
    }
    if !options.latency_figure.is_empty() {
        let rows = measure_latency_figure(dir, &lab_binary, options)?;
        let conditions = format!("bandwidth {}", options.bandwidth());
        println!("{}", latency::table(&rows, &conditions));
        // Each point's CPU time by part and deployd's timeline.
        for row in &rows {
            let conditions = format!(
                "cache latency {} ms per request, bandwidth {}",
                row.point.latency_ms,
                options.bandwidth()
            );
            println!("{}", report::fleet_table(&row.figure, &conditions));
        }
    }
    Ok(())
}

/// The latency figure: one lab for each closure (points that share one
/// share the lab), its link measured before the cache is slowed, then for
/// each of its latencies the limit and deployd, `--latency-rounds` rounds.
fn measure_latency_figure(
    dir: &Path,
    lab_binary: &Path,
    options: &BenchOptions,
) -> Result<Vec<LatencyRow>> {
    let ways = [Way::Limit, Way::Deployd];
    let mut closures: Vec<(u32, u64)> = options
        .latency_figure
        .iter()
        .map(|point| (point.paths, point.megabytes))
        .collect();
    closures.sort_unstable();
    closures.dedup();
    let mut rows = Vec::new();
    for (paths, megabytes) in closures {
        let spec = FleetSpec {
            hosts: options.latency_hosts,
            paths,
            bytes_per_path: megabytes * 1_000_000 / u64::from(paths.max(1)),
            levels: options.levels,
            pull_interval_s: options.pull_interval_s,
        };
        let points: Vec<LatencyPoint> = options
            .latency_figure
            .iter()
            .filter(|point| (point.paths, point.megabytes) == (paths, megabytes))
            .copied()
            .collect();
        let measured = with_fleet(dir, lab_binary.to_owned(), spec, &ways, |fleet| {
            let link = match options.bandwidth_mbps {
                Some(mbps) => Link {
                    bytes_per_second: mbps as f64 * 1e6 / 8.0,
                    measured: false,
                },
                None => latency::measure_link(fleet)?,
            };
            let shape = fleet.closure_shape()?;
            let mut rows = Vec::new();
            for point in points {
                eprintln!(
                    "bench: latency {} ms, closure of {} paths, depth {}",
                    point.latency_ms, shape.paths, shape.depth
                );
                fleet.pace_cache(options.pace_with(point.latency_ms))?;
                let figure = measure_rounds(fleet, &ways, options.latency_rounds)?;
                rows.push(LatencyRow {
                    point,
                    shape,
                    link,
                    figure,
                });
            }
            Ok(rows)
        })?;
        rows.extend(measured);
    }
    // In the order asked for.
    rows.sort_by_key(|row| {
        options
            .latency_figure
            .iter()
            .position(|point| *point == row.point)
    });
    Ok(rows)
}

/// Makes a lab for `spec`, measures every way for every round, and takes
/// the lab down whatever happened.
fn measure(
    dir: &Path,
    lab_binary: PathBuf,
    spec: FleetSpec,
    ways: &[Way],
    options: &BenchOptions,
) -> Result<Figure> {
    with_fleet(dir, lab_binary, spec, ways, |fleet| {
        if options.latency_ms > 0 || options.bandwidth_mbps.is_some() {
            fleet.pace_cache(options.pace())?;
        }
        measure_rounds(fleet, ways, options.rounds)
    })
}

/// Makes a lab for `spec`, runs `body` on it, and takes the lab down
/// whatever happened.
fn with_fleet<T>(
    dir: &Path,
    lab_binary: PathBuf,
    spec: FleetSpec,
    ways: &[Way],
    body: impl FnOnce(&mut BenchFleet) -> Result<T>,
) -> Result<T> {
    eprintln!("bench: a lab of {} hosts", spec.hosts);
    // On error, the half-made lab goes down as it is dropped (this process owns it).
    let mut fleet = BenchFleet::up(dir, lab_binary, spec, ways)?;
    let measured = body(&mut fleet);
    let _teardown = interrupt::TEARDOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    eprintln!("bench: taking the lab down");
    let removed = fleet.down();
    match (measured, removed) {
        (Ok(result), Ok(())) => Ok(result),
        (Ok(_), Err(error)) => Err(error.context("taking the lab down")),
        (Err(error), removed) => {
            if let Err(left) = removed {
                eprintln!("lab: taking the lab down: {left:#}");
            }
            Err(error)
        }
    }
}

/// Every round: every way once, in the round's order, on fresh hosts.
fn measure_rounds(fleet: &BenchFleet, ways: &[Way], rounds: usize) -> Result<Figure> {
    if ways.contains(&Way::Pull) {
        // So that every timed round is a host with a sequence already
        // applied, and an emptied store, taking the next one.
        eprintln!("bench: a first, untimed push publish (every host applies its first state)");
        deploy_untimed(fleet, Way::Pull)?;
    }
    let meter = CpuMeter::new();
    let mut published_in = Vec::new();
    let mut results: Vec<WayRuns> = ways
        .iter()
        .map(|&way| WayRuns {
            way,
            runs: Vec::new(),
        })
        .collect();
    let mut timelines = Vec::new();
    for round in 0..rounds {
        for way in ways::order(ways, round) {
            fleet.ready_inventory_for(way)?;
            fleet.make_hosts_fresh()?;
            let (before, started) = (meter.read(fleet.lab())?, SystemTime::now());
            let deployed = ways::deploy(way, fleet);
            let (after, ended) = (meter.read(fleet.lab())?, SystemTime::now());
            let deployed = deployed.map_err(|error| error.context(format!("{way} failed")))?;
            fleet.check_deployed(way)?;
            published_in.extend(deployed.published_in);
            if way == Way::Deployd {
                timelines.extend(timeline::read(fleet.lab(), started, ended)?);
            }
            let usage = before.until(&after);
            eprintln!(
                "bench: round {}/{rounds}: {way:<15} {:>8.2} s wall, {:>8.2} s CPU",
                round + 1,
                usage.wall.as_secs_f64(),
                usage.machine.as_secs_f64()
            );
            if let Some(runs) = results.iter_mut().find(|runs| runs.way == way) {
                runs.runs.push(usage);
            }
        }
    }
    Ok(Figure {
        hosts: fleet.lab().hosts().len(),
        closure: fleet.closure_size()?,
        ways: results,
        deployd_timelines: timelines,
        pull: ways.contains(&Way::Pull).then(|| PullFigure {
            interval_s: fleet.pull_interval_s(),
            published_in,
        }),
    })
}

/// `way` once, unmeasured, on fresh hosts, checked as a timed one is.
fn deploy_untimed(fleet: &BenchFleet, way: Way) -> Result<()> {
    fleet.ready_inventory_for(way)?;
    fleet.make_hosts_fresh()?;
    ways::deploy(way, fleet).map_err(|error| error.context(format!("the untimed {way} failed")))?;
    fleet.check_deployed(way)
}
