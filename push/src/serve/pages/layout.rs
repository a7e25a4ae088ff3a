//! What every page shares: the frame (title, navigation, the style sheet
//! and script), times and ages, short commits, and the colour a state is
//! shown in. Links are relative (`../hosts/H` from a rollout's page), so
//! the pages work the same behind a proxy that serves them under a path.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, DOCTYPE};

/// Where a page sits: the way back to the pages' root from it.
#[derive(Debug, Clone, Copy)]
pub enum Depth {
    /// `/`.
    Root,
    /// `/rollouts/ID`, `/hosts/H`.
    Nested,
}

impl Depth {
    /// The pages' root, relative to this page.
    pub fn root(self) -> &'static str {
        match self {
            Depth::Root => "./",
            Depth::Nested => "../",
        }
    }
}

/// Whether a page updates itself, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// It does not change (a rollout that ended).
    No,
    /// A rollout running: its lines come every second.
    Fast,
    /// The fleet and its hosts: as often as the hosts are asked.
    Slow,
}

impl Live {
    /// How often the script fetches the page again (ms), and how often a
    /// page without scripts reloads itself (s).
    fn periods(self) -> Option<(u64, u64)> {
        match self {
            Live::No => None,
            Live::Fast => Some((1000, 5)),
            Live::Slow => Some((5000, 10)),
        }
    }
}

/// A page: `title`, updating itself as `live` says (with the script:
/// fetched again and swapped in place; without: reloaded).
pub fn page(title: &str, depth: Depth, live: Live, body: Markup) -> Markup {
    let root = depth.root();
    let periods = live.periods();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if let Some((_, reload_s)) = periods {
                    noscript { meta http-equiv="refresh" content=(reload_s); }
                }
                title { (title) " · deployd" }
                link rel="stylesheet" href={ (root) "assets/pages.css" };
                script src={ (root) "assets/pages.js" } defer {}
            }
            body {
                header {
                    nav { a href=(root) { "deployd" } " · " a href=(root) { "fleet" } }
                }
                main id="live" data-live=(if periods.is_some() { "true" } else { "false" })
                    data-every=(periods.map_or(0, |(every_ms, _)| every_ms)) { (body) }
                footer { "push serve " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// `at_ms` as a `<time>`: its age ("3m20s ago") with the exact time in
/// its title and `datetime`.
pub fn time(at_ms: u64, now_ms: u64) -> Markup {
    let exact = rfc3339(at_ms);
    let age = crate::table::age(now_ms.saturating_sub(at_ms) / 1000);
    html! { time datetime=(exact) title=(exact) { (age) " ago" } }
}

/// `at_ms` in RFC 3339, UTC, to the second.
pub fn rfc3339(at_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// How long from `from_ms` to `to_ms`, as `push` says it.
pub fn took(from_ms: u64, to_ms: u64) -> String {
    let millis = to_ms.saturating_sub(from_ms);
    if millis < 60_000 {
        format!("{:.1}s", millis as f64 / 1000.0)
    } else {
        crate::table::age(millis / 1000)
    }
}

/// A commit's first 12 characters.
pub fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

/// A store path's name (`nixos-system-sambirano-25.05...`), without its
/// hash.
pub fn system_name(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split_once('-').map_or(name, |(_, name)| name)
}

/// How a state looks: `good`, `bad`, `busy` or `quiet`.
pub fn tone(state: &str) -> &'static str {
    match state {
        "succeeded" | "reachable" | "unchanged" => "good",
        "published" | "sent" | "pulls" | "waiting" | "-" => "quiet",
        "failed" | "rolled_back" | "refused" | "unreachable" | "build_failed" | "not_started"
        | "error" | "wrong_host" => "bad",
        _ => "busy",
    }
}

/// A state in its colour.
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge " (tone(state)) } { (state.replace('_', " ")) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_times_and_tones() {
        assert_eq!(
            system_name("/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-nixos-system-sambirano-25.05"),
            "nixos-system-sambirano-25.05"
        );
        assert_eq!(short(&"a".repeat(40)), "a".repeat(12));
        assert_eq!(short("abc"), "abc");
        assert_eq!(rfc3339(1_780_000_000_000), "2026-05-28T20:26:40Z");
        assert_eq!(took(1_000, 3_500), "2.5s");
        assert_eq!(took(0, 125_000), "2m05s");
        assert_eq!(tone("rolled_back"), "bad");
        assert_eq!(tone("fetching"), "busy");
        assert_eq!(tone("succeeded"), "good");
    }

    #[test]
    fn text_is_escaped() {
        let markup = page(
            "<script>alert(1)</script>",
            Depth::Nested,
            Live::Fast,
            badge("<b>"),
        )
        .into_string();
        assert!(!markup.contains("<script>alert"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"), "{markup}");
        assert!(markup.contains("href=\"../assets/pages.css\""), "{markup}");
        assert!(
            markup.contains("http-equiv=\"refresh\" content=\"5\""),
            "{markup}"
        );
        assert!(markup.contains("data-every=\"1000\""), "{markup}");
    }
}
