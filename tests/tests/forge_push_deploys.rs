//! A push to the forge deploys, for each of the four forges: the forge's
//! hook reaches the real `push serve`, which fetches the repository from the
//! forge stand-in over HTTP, deploys the fetched tip to every following
//! host, and reports each host on the commit through the forge's API (over
//! HTTPS, trusting the test's CA through `ca_file`): `pending` building, `pending`
//! (GitLab: `running`) deploying, then `success`, each linking to the
//! host's part of the rollout's page on push serve's `public_url`. A replayed hook deploys nothing again; a hook naming a commit
//! the branch does not hold deploys what the branch holds.

mod support;

use std::time::{Duration, Instant};

use deployd_lab::forge::ForgeKind;
use support::deployd::status;
use support::forge::{states_of, ForgeFleet};
use support::push::system_at;

#[test]
fn a_push_to_main_deploys_every_host_and_each_forge_shows_it_on_the_commit() {
    for kind in ForgeKind::ALL {
        let mut fleet = ForgeFleet::up(2, kind);
        let hooked = Instant::now();
        let (rev, answer) = fleet.push_change();
        assert_eq!(answer, 202, "{kind}: {}", fleet.service_log());
        let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
        let first = statuses
            .first()
            .expect("a status")
            .at
            .duration_since(hooked);
        let last = statuses.last().expect("a status").at.duration_since(hooked);
        eprintln!("{kind}: hook to first status {first:?}, to every host's result {last:?}");
        let (pending, deploying) = match kind {
            ForgeKind::GitLab => ("pending", "running"),
            _ => ("pending", "pending"),
        };
        // The rollout's record is written just after its last status.
        let recorded = support::wait_until(Duration::from_secs(20), || {
            fleet.service_status()["recent"][0]["rev"] == rev.as_str()
        });
        assert!(recorded, "{}", fleet.service_log());
        let service = fleet.service_status();
        let rollout = &service["recent"][0];
        for host in fleet.lab.hosts() {
            assert_eq!(
                states_of(&statuses, &host.name),
                [pending, deploying, "success"],
                "{kind} {}",
                host.name
            );
            let context = format!("deployd/{}", host.name);
            let mine: Vec<_> = statuses.iter().filter(|s| s.context == context).collect();
            assert_eq!(mine[0].description.as_deref(), Some("building"));
            assert_eq!(mine[1].description.as_deref(), Some("deploying"));
            // Every status, the first included, links to the host's part
            // of the rollout's page on push serve's public_url.
            let page = format!(
                "{}/rollouts/{}#host-{}",
                fleet.url(),
                rollout["id"],
                host.name
            );
            for status in &mine {
                assert_eq!(status.target_url.as_deref(), Some(page.as_str()), "{kind}");
            }
            assert!(mine.iter().all(|status| status.token_valid));
            // Exactly that commit runs there.
            let expected = system_at(fleet.lab.flake().dir(), &rev, &host.name);
            assert_eq!(
                host.current_system(),
                Some(expected),
                "{kind} {}",
                host.name
            );
            let current = status(&fleet.lab, host)
                .current_deploy
                .expect("current deploy");
            assert_eq!(current.rev.as_ref().map(|r| r.as_str()), Some(rev.as_str()));
            // push serve's status names the host's own deploy record.
            let outcome = rollout["hosts"]
                .as_array()
                .and_then(|hosts| hosts.iter().find(|h| h["host"] == host.name.as_str()))
                .expect("the host's outcome");
            let record_url = outcome["target_url"].as_str().expect("a record URL");
            assert!(
                record_url.starts_with(&fleet.lab.deployd_url(host))
                    && record_url.ends_with(&format!("/v1/deploys/{}", current.deploy_id)),
                "{record_url}"
            );
        }
        assert_eq!(
            service["following"][0]["deployed"],
            rev.as_str(),
            "{service}"
        );
        assert_eq!(service["recent"][0]["outcome"], "succeeded", "{service}");
    }
}

#[test]
fn a_replayed_hook_or_one_naming_another_commit_deploys_only_the_branch_tip() {
    let mut fleet = ForgeFleet::up(2, ForgeKind::GitHub);
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    let deploys_before: Vec<_> = fleet
        .lab
        .hosts()
        .iter()
        .map(|host| {
            status(&fleet.lab, host)
                .current_deploy
                .expect("deploy")
                .deploy_id
        })
        .collect();

    // The same delivery again (GitHub keeps its id): the tip is deployed,
    // so the hook is answered 204 and nothing is fetched or deployed again.
    let delivery = fleet.forge.hook_deliveries().pop().expect("the delivery");
    let again = fleet.forge.redeliver(&delivery).expect("redeliver");
    assert_eq!(again.status, 204, "{}", again.body);
    let service = fleet.service_status();
    assert_eq!(
        service["recent"].as_array().map(Vec::len),
        Some(1),
        "{service}"
    );
    assert_eq!(
        service["queued"].as_array().map(Vec::len),
        Some(0),
        "{service}"
    );
    let statuses_after_replay = fleet.forge.statuses().len();

    // A hook that names a commit the branch does not hold: the service
    // deploys the branch's tip as fetched (here: unchanged), nothing else.
    let stranger = "5".repeat(40);
    assert_eq!(fleet.hook(&rev, &stranger), 202);
    let settled = support::wait_until(Duration::from_secs(60), || {
        fleet.service_status()["recent"]
            .as_array()
            .is_some_and(|recent| recent.len() == 2)
    });
    assert!(settled, "{}", fleet.service_log());
    let service = fleet.service_status();
    assert_eq!(service["recent"][0]["rev"], rev.as_str(), "{service}");
    assert_eq!(service["recent"][0]["outcome"], "unchanged", "{service}");
    assert!(fleet
        .forge
        .statuses()
        .iter()
        .all(|status| status.sha != stranger));
    assert_eq!(fleet.forge.statuses().len(), statuses_after_replay);
    for (host, before) in fleet.lab.hosts().iter().zip(deploys_before) {
        let now = status(&fleet.lab, host)
            .current_deploy
            .expect("deploy")
            .deploy_id;
        assert_eq!(now, before, "{} was deployed again", host.name);
    }
}

#[test]
fn a_failing_switch_or_an_unreachable_host_is_reported_on_that_host_alone() {
    let mut fleet = ForgeFleet::up(3, ForgeKind::Forgejo);
    let hosts = fleet.lab.hosts().to_vec();
    let (broken, down, fine) = (&hosts[0], &hosts[1], &hosts[2]);
    // A first generation everywhere, so that there is one to go back to.
    let (first, _) = fleet.push_change();
    fleet.wait_for_final_statuses(&first, Duration::from_secs(120));
    fleet.lab.stop_deployd(down).expect("stop deployd");
    let before = fleet.lab.flake().head().expect("head");
    fleet
        .lab
        .flake_mut()
        .commit("Change every system", |settings| settings.label += 1)
        .expect("commit");
    let rev = fleet
        .lab
        .flake_mut()
        .commit_failing_switch(&broken.name)
        .expect("commit");
    assert_eq!(fleet.hook(&before, &rev), 202);
    let statuses = fleet.wait_for_final_statuses(&rev, Duration::from_secs(120));
    let last = |host: &str| {
        statuses
            .iter()
            .rev()
            .find(|status| status.context == format!("deployd/{host}"))
            .expect("a status")
            .clone()
    };
    let failed = last(&broken.name);
    assert_eq!(failed.state, "failure", "{failed:?}");
    let reason = failed.description.unwrap_or_default();
    assert!(
        // The toy system's activation fails: NixOS's switch goes on and exits 2.
        reason.contains("rolled back") && reason.contains("activation_failed"),
        "{reason}"
    );
    let unreachable = last(&down.name);
    assert_eq!(unreachable.state, "error", "{unreachable:?}");
    assert!(unreachable
        .description
        .unwrap_or_default()
        .contains("unreachable"));
    assert_eq!(last(&fine.name).state, "success");
    assert_eq!(
        broken.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &first, &broken.name))
    );
    assert_eq!(
        fine.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &rev, &fine.name))
    );
    let service = fleet.service_status();
    assert_eq!(service["recent"][0]["outcome"], "failed", "{service}");
}
