//! Tests of batch planning and the failure budget.

use super::*;

fn hosts(names: &[&str]) -> Vec<HostName> {
    names
        .iter()
        .map(|name| name.parse().expect("host"))
        .collect()
}

const SIX: [&str; 6] = [
    "ankarana",
    "isalo",
    "kelyus",
    "marojejy",
    "sambirano",
    "tsingy",
];

fn policy(canary: Option<&str>, batch: Option<&str>, max_failures: Option<usize>) -> Policy {
    Policy {
        canary: canary.map(|written| written.parse().expect("canary")),
        batch: batch.map(|written| written.parse().expect("batch")),
        max_failures,
        ..Policy::default()
    }
}

fn planned(policy: &Policy) -> Vec<(String, Vec<String>)> {
    policy
        .plan(&hosts(&SIX))
        .expect("a plan")
        .into_iter()
        .map(|batch| {
            let names = batch.hosts.iter().map(ToString::to_string).collect();
            (batch.name.to_string(), names)
        })
        .collect()
}

fn batch(name: &str, hosts: &[&str]) -> (String, Vec<String>) {
    (
        name.to_owned(),
        hosts.iter().map(|host| (*host).to_owned()).collect(),
    )
}

#[test]
fn without_a_canary_or_batch_every_host_is_one_batch_and_nothing_stops() {
    let policy = Policy::default();
    assert_eq!(planned(&policy), vec![batch("1", &SIX)]);
    assert!(!policy.is_staged());
    assert_eq!(policy.budget(), None);
    let mut budget = Budget::new(&policy);
    for host in hosts(&SIX) {
        budget.failed(&host, BatchName::Number(1));
    }
    assert_eq!(budget.stop(), None);
}

#[test]
fn a_canary_count_then_batches_of_a_count_in_order() {
    assert_eq!(
        planned(&policy(Some("1"), Some("2"), None)),
        vec![
            batch("canary", &["ankarana"]),
            batch("1", &["isalo", "kelyus"]),
            batch("2", &["marojejy", "sambirano"]),
            batch("3", &["tsingy"]),
        ]
    );
    assert_eq!(
        planned(&policy(Some("2"), None, None)),
        vec![
            batch("canary", &["ankarana", "isalo"]),
            batch("1", &["kelyus", "marojejy", "sambirano", "tsingy"]),
        ]
    );
}

#[test]
fn percentages_are_of_the_selected_hosts_rounded_up_at_least_one() {
    // 25% of 6 is 1.5: 2.
    assert_eq!(
        planned(&policy(None, Some("25%"), None)),
        vec![
            batch("1", &["ankarana", "isalo"]),
            batch("2", &["kelyus", "marojejy"]),
            batch("3", &["sambirano", "tsingy"]),
        ]
    );
    assert_eq!(BatchSize::Percent(1).hosts(6), 1);
    assert_eq!(BatchSize::Percent(100).hosts(6), 6);
    assert_eq!(BatchSize::Percent(50).hosts(7), 4);
}

#[test]
fn canary_names_go_first_in_push_tomls_order() {
    assert_eq!(
        planned(&policy(Some("tsingy,isalo,isalo"), Some("50%"), None)),
        vec![
            batch("canary", &["isalo", "tsingy"]),
            batch("1", &["ankarana", "kelyus", "marojejy"]),
            batch("2", &["sambirano"]),
        ]
    );
}

#[test]
fn bad_input_is_refused() {
    for (written, why) in [("0", "at least 1"), ("web-*", "neither a count")] {
        let error = written.parse::<Canary>().expect_err(written);
        assert!(error.contains(why), "{written}: {error}");
    }
    for (written, why) in [
        ("0", "at least 1"),
        ("0%", "at least 1"),
        ("101%", "more than 100%"),
        ("-1", "not a batch size"),
        ("half", "not a batch size"),
    ] {
        let error = written.parse::<BatchSize>().expect_err(written);
        assert!(error.contains(why), "{written}: {error}");
    }
    let six = hosts(&SIX);
    for (policy, why) in [
        (policy(Some("6"), None, None), "leaves no host"),
        (policy(Some("9"), None, None), "leaves no host"),
        (
            policy(Some("nosy-be"), None, None),
            "not one of the selected hosts",
        ),
        (
            policy(Some(&SIX.join(",")), None, None),
            "names every selected host",
        ),
        (
            policy(None, None, Some(1)),
            "needs a canary or a batch size",
        ),
    ] {
        let error = policy.plan(&six).expect_err(why).to_string();
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn the_budget_stops_once_more_hosts_failed_than_allowed() {
    let [ankarana, isalo, kelyus] =
        ["ankarana", "isalo", "kelyus"].map(|name| name.parse::<HostName>().expect("host"));
    // Default 0 with a canary: its failure stops the rollout.
    let mut budget = Budget::new(&policy(Some("1"), None, None));
    assert_eq!(budget.stop(), None);
    budget.failed(&ankarana, BatchName::Canary);
    assert_eq!(
        budget.stop().as_deref(),
        Some("after canary ankarana failed")
    );

    // One let through, the second stops.
    let mut budget = Budget::new(&policy(None, Some("2"), Some(1)));
    budget.failed(&ankarana, BatchName::Number(1));
    assert_eq!(budget.stop(), None);
    budget.failed(&isalo, BatchName::Number(2));
    assert_eq!(
        budget.stop().as_deref(),
        Some("after ankarana and isalo failed: more than --max-failures 1")
    );

    // push serve spells its key as the config does.
    let mut budget = Budget::new(&Policy {
        budget_name: "max_failures",
        ..policy(None, Some("1"), Some(2))
    });
    for host in [&ankarana, &isalo, &kelyus] {
        budget.failed(host, BatchName::Number(1));
    }
    assert_eq!(
        budget.stop().as_deref(),
        Some("after ankarana, isalo and kelyus failed: more than max_failures 2")
    );
}

#[test]
fn long_lists_of_names_are_cut() {
    assert_eq!(listed(&["a"]), "a");
    assert_eq!(listed(&["a", "b", "c", "d"]), "a, b, c and d");
    assert_eq!(listed(&["a", "b", "c", "d", "e"]), "a, b, c and 2 more");
}
