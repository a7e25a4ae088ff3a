//! The benchmark's tables: per way, the median of its rounds, their spread
//! (min-max), and the median's ratio to the limit's; CPU time by part; the
//! pull way's time against the poll interval; and, for the scale figure,
//! wall and CPU time per host.

use std::fmt::Write;
use std::time::Duration;

use super::cpu::Usage;
use super::fleet::ClosureSize;
use super::timeline::{self, Timeline};
use super::ways::Way;

/// Every round of one way.
#[derive(Debug, Clone)]
pub struct WayRuns {
    /// The way.
    pub way: Way,
    /// One measurement per round.
    pub runs: Vec<Usage>,
}

/// The results of one lab: every way, at one number of hosts.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Hosts deployed to.
    pub hosts: usize,
    /// One host's closure.
    pub closure: ClosureSize,
    /// Every way measured.
    pub ways: Vec<WayRuns>,
    /// Where deployd's wall time went, per host and round.
    pub deployd_timelines: Vec<Timeline>,
    /// The pull way's interval and publishes, when it was measured.
    pub pull: Option<PullFigure>,
}

/// What the pull way's time is made of, besides its wall time.
#[derive(Debug, Clone)]
pub struct PullFigure {
    /// The hosts' poll interval, in seconds.
    pub interval_s: u64,
    /// How long `push publish` took, per round.
    pub published_in: Vec<Duration>,
}

/// Median and spread of some measurements, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median (of an even count, the mean of the middle two).
    pub median: f64,
    /// The least.
    pub min: f64,
    /// The most.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = Duration>) -> Option<Spread> {
        let mut seconds: Vec<f64> = values
            .into_iter()
            .map(|value| value.as_secs_f64())
            .collect();
        if seconds.is_empty() {
            return None;
        }
        seconds.sort_by(f64::total_cmp);
        let middle = seconds.len() / 2;
        let median = if seconds.len() % 2 == 1 {
            seconds[middle]
        } else {
            (seconds[middle - 1] + seconds[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: seconds[0],
            max: seconds[seconds.len() - 1],
        })
    }
}

impl WayRuns {
    fn spread(&self, part: impl Fn(&Usage) -> Duration) -> Option<Spread> {
        Spread::of(self.runs.iter().map(part))
    }
}

impl Figure {
    fn limit(&self, part: impl Fn(&Usage) -> Duration) -> Option<Spread> {
        self.ways
            .iter()
            .find(|runs| runs.way == Way::Limit)
            .and_then(|runs| runs.spread(part))
    }
}

/// `value / limit`, or `-` without a limit to compare with.
fn ratio(value: f64, limit: Option<Spread>) -> String {
    match limit {
        Some(limit) if limit.median > 0.0 => format!("{:.2}", value / limit.median),
        _ => "-".into(),
    }
}

fn range(spread: Spread) -> String {
    format!("({:.2}-{:.2})", spread.min, spread.max)
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn wall(usage: &Usage) -> Duration {
    usage.wall
}

fn machine(usage: &Usage) -> Duration {
    usage.machine
}

/// The first figure: one line per way, wall and machine CPU time with their
/// ratios to the limit, then CPU time by part.
pub fn fleet_table(figure: &Figure, conditions: &str) -> String {
    let mut text = String::new();
    let rounds = figure.ways.first().map_or(0, |runs| runs.runs.len());
    let _ = writeln!(
        text,
        "fan-out to {} hosts, closure of {} paths ({:.1} MB) each, {conditions}, {rounds} rounds",
        figure.hosts,
        figure.closure.paths,
        megabytes(figure.closure.bytes)
    );
    let _ = writeln!(
        text,
        "{:<15} {:>8} {:>17} {:>7}   {:>8} {:>17} {:>7}",
        "way", "wall s", "(min-max)", "x limit", "CPU s", "(min-max)", "x limit"
    );
    let (limit_wall, limit_cpu) = (figure.limit(wall), figure.limit(machine));
    for runs in &figure.ways {
        let (Some(time), Some(cpu)) = (runs.spread(wall), runs.spread(machine)) else {
            continue;
        };
        let _ = writeln!(
            text,
            "{:<15} {:>8.2} {:>17} {:>7}   {:>8.2} {:>17} {:>7}",
            runs.way,
            time.median,
            range(time),
            ratio(time.median, limit_wall),
            cpu.median,
            range(cpu),
            ratio(cpu.median, limit_cpu),
        );
    }
    text.push('\n');
    text.push_str(&parts_table(figure));
    if let Some(pull) = pull_table(figure) {
        text.push('\n');
        text.push_str(&pull);
    }
    if !figure.deployd_timelines.is_empty() {
        text.push('\n');
        text.push_str(&timeline::table(&figure.deployd_timelines));
    }
    text
}

/// CPU time by part, medians over the rounds.
fn parts_table(figure: &Figure) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "CPU s by part (medians)");
    let _ = writeln!(
        text,
        "{:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "way",
        "operator",
        "hosts",
        "deployd",
        "daemon",
        "pid1",
        "journald",
        "units",
        "cache",
        "sum",
        "x limit",
        "rest"
    );
    let parts: [fn(&Usage) -> Duration; 8] = [
        |usage| usage.operator,
        |usage| usage.hosts,
        |usage| usage.deployd,
        |usage| usage.daemon,
        |usage| usage.pid1,
        |usage| usage.journald,
        Usage::other_units,
        |usage| usage.cache,
    ];
    let limit_sum = figure.limit(Usage::parts);
    for runs in &figure.ways {
        let median =
            |part: fn(&Usage) -> Duration| runs.spread(part).map_or(0.0, |spread| spread.median);
        let _ = write!(text, "{:<15}", runs.way);
        for part in parts {
            let _ = write!(text, " {:>9.2}", median(part));
        }
        let sum = median(Usage::parts);
        let _ = writeln!(
            text,
            " {sum:>9.2} {:>7} {:>9.2}",
            ratio(sum, limit_sum),
            median(Usage::rest)
        );
    }
    text.push_str(
        "operator: what ran on this side (push with the nix it runs; nix-copy-closure and ssh; \
         the limit's nix copy and switch); hosts: everything the hosts' systemds ran (deployd, \
         its fetch and switch, sshd sessions, journald); of which deployd: deployd.service \
         alone, with the commands it runs (its fetch, nix-env, systemctl, systemd-run); daemon: \
         the deployd process alone (part of deployd); pid1: \
         the hosts' systemd itself; journald; units: the other units (the switch's transient \
         unit, D-Bus, sshd sessions); cache: the cache server; sum: operator + hosts + cache; \
         rest: the machine's CPU time beyond the sum (other programs, the kernel's own work).\n",
    );
    text
}

/// The pull way against the poll interval: its wall time (median and
/// spread), the interval, their ratio, and what the wall time is made of
/// (medians): the publish, the limit's fetch and switch, and the rest,
/// the wait for every host's next poll (at most 1.2 times the interval).
fn pull_table(figure: &Figure) -> Option<String> {
    let pull = figure.pull.as_ref()?;
    let time = figure
        .ways
        .iter()
        .find(|runs| runs.way == Way::Pull)?
        .spread(wall)?;
    let interval = pull.interval_s as f64;
    let publish = Spread::of(pull.published_in.iter().copied()).map_or(0.0, |s| s.median);
    let limit = figure.limit(wall).map(|limit| limit.median);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "pull: until every host switched, hosts polling every {} s (each wait 0.8-1.2 times it)",
        pull.interval_s
    );
    let _ = writeln!(
        text,
        "{:>8} {:>17} {:>10} {:>10} {:>9} {:>8} {:>8} {:>10}",
        "wall s",
        "(min-max)",
        "interval s",
        "x interval",
        "publish s",
        "limit s",
        "wait s",
        "x interval"
    );
    let optional = |value: Option<f64>| value.map_or("-".to_owned(), |value| format!("{value:.2}"));
    let wait = limit.map(|limit| time.median - publish - limit);
    let _ = writeln!(
        text,
        "{:>8.2} {:>17} {:>10} {:>10.2} {:>9.2} {:>8} {:>8} {:>10}",
        time.median,
        range(time),
        pull.interval_s,
        time.median / interval,
        publish,
        optional(limit),
        optional(wait),
        optional(wait.map(|wait| wait / interval)),
    );
    text.push_str(
        "publish: push publish --all (its no-op build, signing, writing the states); limit: \
         the limit way's wall time, the fetch and switch alone; wait: wall - publish - limit, \
         the wait for every host's next poll (medians).\n",
    );
    Some(text)
}

/// The scale figure: one line per number of hosts and way, with wall and
/// CPU time per host.
pub fn scale_table(figures: &[Figure], conditions: &str) -> String {
    let mut text = String::new();
    let closure = figures.first().map(|figure| figure.closure);
    let _ = writeln!(
        text,
        "scale: closure of {} paths ({:.1} MB) each, {conditions}",
        closure.map_or(0, |closure| closure.paths),
        megabytes(closure.map_or(0, |closure| closure.bytes)),
    );
    let _ = writeln!(
        text,
        "{:>5} {:<15} {:>8} {:>17} {:>9} {:>7}   {:>8} {:>17} {:>9} {:>7}",
        "hosts",
        "way",
        "wall s",
        "(min-max)",
        "per host",
        "x limit",
        "CPU s",
        "(min-max)",
        "per host",
        "x limit"
    );
    for figure in figures {
        let (limit_wall, limit_cpu) = (figure.limit(wall), figure.limit(machine));
        let hosts = figure.hosts.max(1) as f64;
        for runs in &figure.ways {
            let (Some(time), Some(cpu)) = (runs.spread(wall), runs.spread(machine)) else {
                continue;
            };
            let _ = writeln!(
                text,
                "{:>5} {:<15} {:>8.2} {:>17} {:>9.3} {:>7}   {:>8.2} {:>17} {:>9.3} {:>7}",
                figure.hosts,
                runs.way,
                time.median,
                range(time),
                time.median / hosts,
                ratio(time.median, limit_wall),
                cpu.median,
                range(cpu),
                cpu.median / hosts,
                ratio(cpu.median, limit_cpu),
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(values: &[f64]) -> Vec<Duration> {
        values
            .iter()
            .map(|&value| Duration::from_secs_f64(value))
            .collect()
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_twos_mean() {
        let odd = Spread::of(seconds(&[3.0, 1.0, 2.0])).expect("values");
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = Spread::of(seconds(&[4.0, 1.0, 2.0, 3.0])).expect("values");
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(Vec::new()), None);
    }

    fn usage(wall: f64, machine: f64) -> Usage {
        Usage {
            wall: Duration::from_secs_f64(wall),
            machine: Duration::from_secs_f64(machine),
            operator: Duration::from_secs_f64(machine / 2.0),
            ..Usage::default()
        }
    }

    fn figure() -> Figure {
        Figure {
            hosts: 10,
            closure: ClosureSize {
                paths: 6,
                bytes: 2_000_000,
            },
            ways: vec![
                WayRuns {
                    way: Way::Limit,
                    runs: vec![usage(2.0, 4.0), usage(1.0, 3.0), usage(3.0, 5.0)],
                },
                WayRuns {
                    way: Way::Deployd,
                    runs: vec![usage(3.0, 8.0), usage(4.0, 6.0), usage(5.0, 7.0)],
                },
            ],
            deployd_timelines: Vec::new(),
            pull: None,
        }
    }

    #[test]
    fn each_way_has_a_line_with_its_ratios_to_the_limit() {
        let table = fleet_table(&figure(), "cache unpaced");
        let deployd = table
            .lines()
            .find(|line| line.starts_with("deployd "))
            .expect("a deployd line");
        let columns: Vec<&str> = deployd.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                "deployd",
                "4.00",
                "(3.00-5.00)",
                "2.00",
                "7.00",
                "(6.00-8.00)",
                "1.75"
            ]
        );
        let limit = table
            .lines()
            .find(|line| line.starts_with("limit "))
            .expect("a limit line");
        assert!(limit.contains(" 1.00 "), "{limit}");
        assert!(table.contains("closure of 6 paths (2.0 MB)"), "{table}");
        let parts = table
            .lines()
            .skip_while(|line| !line.starts_with("CPU s by part"))
            .find(|line| line.starts_with("deployd "))
            .expect("a deployd line of parts");
        let columns: Vec<&str> = parts.split_whitespace().collect();
        // operator (half the machine's), hosts, deployd, daemon, pid1,
        // journald, units, cache, sum, x limit, rest.
        assert_eq!(
            columns,
            [
                "deployd", "3.50", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "3.50",
                "1.75", "3.50"
            ]
        );
    }

    #[test]
    fn the_scale_table_divides_by_the_hosts() {
        let table = scale_table(&[figure()], "cache unpaced");
        let line = table
            .lines()
            .find(|line| line.contains(" deployd "))
            .expect("a deployd line");
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                "10",
                "deployd",
                "4.00",
                "(3.00-5.00)",
                "0.400",
                "2.00",
                "7.00",
                "(6.00-8.00)",
                "0.700",
                "1.75"
            ]
        );
    }

    #[test]
    fn the_pull_table_sets_the_wall_time_against_the_interval() {
        let mut figure = figure();
        figure.ways.push(WayRuns {
            way: Way::Pull,
            runs: vec![usage(12.0, 9.0), usage(14.0, 9.0), usage(16.0, 9.0)],
        });
        figure.pull = Some(PullFigure {
            interval_s: 10,
            published_in: seconds(&[1.0, 1.0, 3.0]),
        });
        let table = fleet_table(&figure, "cache unpaced");
        let line = table
            .lines()
            .skip_while(|line| !line.starts_with("pull: "))
            .nth(2)
            .expect("a line of numbers");
        let columns: Vec<&str> = line.split_whitespace().collect();
        // wall, (min-max), interval, x interval, publish, limit, wait, x interval.
        assert_eq!(
            columns,
            [
                "14.00",
                "(12.00-16.00)",
                "10",
                "1.40",
                "1.00",
                "2.00",
                "11.00",
                "1.10"
            ]
        );
        assert!(pull_table(&self::figure()).is_none());
    }

    #[test]
    fn without_the_limit_there_is_no_ratio() {
        assert_eq!(ratio(3.0, None), "-");
    }
}
