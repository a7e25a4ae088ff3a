//! push serve's pages in a real headless Chromium, against the real `push
//! serve` in the lab, deploying real hosts: the fleet page lists every
//! host with its revision and state; while a host's switch is held (the
//! toy switch's gate), the rollout's page shows its log lines and phases
//! appear without a reload; after a failed switch, the host's part of the
//! rollout page and its row on the fleet page say it rolled back and why;
//! every commit status the forge stand-in received has a `target_url` that
//! the browser opens to that rollout's page. Screenshots of the three pages
//! (desktop and phone) go to the screenshot directory.

mod support;

use std::time::Duration;

use deployd_lab::browser::{screenshot_dir, Browser};
use deployd_lab::forge::ForgeKind;
use support::forge::ForgeFleet;

/// How long a page may take to show what the fleet did.
const PAGE_WAIT: Duration = Duration::from_secs(120);

/// The number push serve gave the rollout of `rev`, once it is recorded.
fn rollout_of(fleet: &ForgeFleet, rev: &str) -> u64 {
    let mut id = None;
    let recorded = support::wait_until(Duration::from_secs(30), || {
        id = fleet.service_status()["recent"]
            .as_array()
            .and_then(|recent| recent.iter().find(|record| record["rev"] == rev))
            .and_then(|record| record["id"].as_u64());
        id.is_some()
    });
    assert!(recorded, "no rollout of {rev}:\n{}", fleet.service_log());
    id.expect("an id")
}

/// The number of the rollout running now.
fn running_rollout(fleet: &ForgeFleet) -> u64 {
    let mut id = None;
    let running = support::wait_until(Duration::from_secs(60), || {
        id = fleet.service_status()["running"]["id"].as_u64();
        id.is_some()
    });
    assert!(running, "no rollout runs:\n{}", fleet.service_log());
    id.expect("an id")
}

fn screenshot(browser: &Browser, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    browser.screenshot(&path).expect("screenshot");
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn the_pages_show_the_fleet_a_live_rollout_and_a_rollback_and_every_status_leads_there() {
    let mut fleet = ForgeFleet::up(2, ForgeKind::Forgejo);
    let hosts = fleet.lab.hosts().to_vec();
    let (held, broken) = (&hosts[0], &hosts[1]);
    let browser = Browser::start().expect("Chromium (scripts/install-deps installs it)");
    let base = fleet.url();

    // A first generation everywhere: the fleet page lists each host with
    // that revision and its state.
    let (first, answer) = fleet.push_change();
    assert_eq!(answer, 202, "{}", fleet.service_log());
    fleet.wait_for_final_statuses(&first, PAGE_WAIT);
    let first_rollout = rollout_of(&fleet, &first);
    browser.open(&format!("{base}/")).expect("the fleet page");
    for host in &hosts {
        let row = format!("#host-{}", host.name);
        let text = browser
            .wait_for_text(&row, &first[..12], PAGE_WAIT)
            .expect("the host's row shows the revision");
        assert!(text.contains("succeeded"), "{text}");
        assert!(text.contains("reachable"), "{text}");
    }
    screenshot(&browser, "fleet");

    // A rollout whose switch is held on one host: its page, opened while
    // the host waits, shows the switch's lines and the next phases come
    // without a reload (a mark set on the page's window survives).
    held.set_switch_gate(true).expect("close the gate");
    let before = fleet.lab.flake().head().expect("head");
    let second = fleet
        .lab
        .flake_mut()
        .commit("Change every system", |settings| settings.label += 1)
        .expect("commit");
    assert_eq!(fleet.hook(&before, &second), 202);
    let live_rollout = running_rollout(&fleet);
    browser
        .open(&format!("{base}/rollouts/{live_rollout}"))
        .expect("the rollout's page");
    browser
        .eval("window.deploydMark = 'not reloaded'; return true;")
        .expect("mark the page");
    let section = format!("#host-{}", held.name);
    let shown = browser
        .wait_for_text(&section, "switching to", PAGE_WAIT)
        .expect("the held switch's first line appears");
    assert!(shown.contains("activating"), "{shown}");
    screenshot(&browser, "rollout-live");
    held.set_switch_gate(false).expect("open the gate");
    let done = browser
        .wait_for_text(&section, "succeeded", PAGE_WAIT)
        .expect("the host's end appears");
    assert!(done.contains("switching to"), "{done}");
    let mark = browser.eval("return window.deploydMark;").expect("mark");
    assert_eq!(mark, "not reloaded", "the page was reloaded");
    let ended = browser
        .wait_for_text("h1", "succeeded", PAGE_WAIT)
        .expect("the rollout's end appears");
    assert!(
        ended.contains(&format!("Rollout {live_rollout}")),
        "{ended}"
    );

    // A failed switch: the host's part says rolled back, and why; so does
    // its row on the fleet page.
    let before = fleet.lab.flake().head().expect("head");
    let third = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(&broken.name)
        .expect("commit");
    assert_eq!(fleet.hook(&before, &third), 202);
    fleet.wait_for_final_statuses(&third, PAGE_WAIT);
    let failed_rollout = rollout_of(&fleet, &third);
    browser
        .open(&format!("{base}/rollouts/{failed_rollout}"))
        .expect("the failed rollout's page");
    let part = browser
        .text_of(&format!("#host-{}", broken.name))
        .expect("the host's part");
    assert!(
        part.contains("rolled back") && part.contains("activation_failed"),
        "{part}"
    );
    screenshot(&browser, "rollout-rolled-back");
    browser.open(&format!("{base}/")).expect("the fleet page");
    let row = browser
        .wait_for_text(&format!("#host-{}", broken.name), "rolled back", PAGE_WAIT)
        .expect("the host's row says rolled back");
    assert!(row.contains("activation_failed"), "{row}");
    browser
        .open(&format!("{base}/hosts/{}", broken.name))
        .expect("the host's page");
    let links = browser
        .eval("return Array.from(document.querySelectorAll('table.history a')).map(a => a.getAttribute('href'));")
        .expect("the history's links");
    let expected: Vec<String> = [failed_rollout, live_rollout, first_rollout]
        .iter()
        .map(|id| format!("../rollouts/{id}#host-{}", broken.name))
        .collect();
    assert_eq!(links, serde_json::json!(expected), "newest first");
    let history = browser.text_of("table.history").expect("the history");
    assert!(history.contains("rolled back"), "{history}");
    screenshot(&browser, "host");
    browser.set_phone_size().expect("a phone's window");
    let width = browser.eval("return window.innerWidth;").expect("width");
    assert!(width.as_u64().is_some_and(|width| width <= 420), "{width}");
    browser.open(&format!("{base}/")).expect("the fleet page");
    screenshot(&browser, "fleet-phone");
    browser
        .open(&format!("{base}/rollouts/{failed_rollout}"))
        .expect("the rollout's page");
    screenshot(&browser, "rollout-phone");
    browser.set_desktop_size().expect("a desktop's window");

    // Every status the forge received, the first "building" ones included,
    // links to its rollout's page, at its host's part, and the browser
    // opens it there.
    let rollouts = [
        (first.as_str(), first_rollout),
        (second.as_str(), live_rollout),
        (third.as_str(), failed_rollout),
    ];
    let statuses = fleet.forge.statuses();
    assert!(statuses.len() >= 3 * 2 * 3, "{statuses:?}");
    for status in &statuses {
        let (_, id) = rollouts
            .iter()
            .find(|(rev, _)| *rev == status.sha)
            .expect("a status of one of the rollouts");
        let host = status
            .context
            .strip_prefix("deployd/")
            .expect("a host's context");
        let target = status
            .target_url
            .as_deref()
            .unwrap_or_else(|| panic!("a status without target_url: {status:?}"));
        assert_eq!(target, format!("{base}/rollouts/{id}#host-{host}"));
        browser.open(target).expect("open the status's link");
        let heading = browser.text_of("h1").expect("the page's heading");
        assert!(
            heading.starts_with(&format!("Rollout {id} ")),
            "{target}: {heading}"
        );
        let part = browser
            .text_of(&format!("#host-{host}"))
            .expect("the host's part");
        assert!(part.starts_with(host), "{part}");
    }
    browser.close().expect("close the browser");
}
