"""Synapse with workers (PostgreSQL, Redis, main and two generic workers, cluster.py), the module
loaded in all three processes: embedded, and in daemon mode with one daemon shared by all.

Logins on either worker, a race of first logins of one new user across both workers, access
tokens valid on the other worker, and each process's metrics counting the logins it served."""

from __future__ import annotations

import concurrent.futures
import contextlib

import pytest
from cluster import running_cluster, running_postgres
from helpers import SECRET, claims, token
from homeserver import Daemon, wait_until
from prometheus_client.parser import text_string_to_metric_families

AUD = "test.local-clients"
LOGIN_TYPE = "com.famedly.login.token"


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as pg:
        yield pg


@pytest.fixture(scope="module", params=["embedded", "daemon"])
def cluster(request, postgres, tmp_path_factory):
    mode = request.param
    directory = tmp_path_factory.mktemp(f"workers-{mode}")
    with contextlib.ExitStack() as stack:
        if mode == "embedded":
            module_config = {"secret": SECRET, "allow_registration": True, "audiences": [AUD]}
        else:
            daemon = Daemon(
                directory,
                f'secret = "{SECRET}"\nallow_registration = true\naudiences = ["{AUD}"]\n[server]\nworkers = 1\n',
            )
            stack.callback(daemon.stop)
            daemon.start()
            module_config = {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 5}}
        yield stack.enter_context(running_cluster(directory, postgres, f"synapse_{mode}", module_config))


@pytest.fixture(scope="module", params=["embedded", "daemon"])
def replay_cluster(request, postgres, tmp_path_factory):
    """The same deployment with `single_use_tokens`: the store is the shared PostgreSQL."""
    mode = request.param
    directory = tmp_path_factory.mktemp(f"workers-replay-{mode}")
    with contextlib.ExitStack() as stack:
        if mode == "embedded":
            module_config = {
                "secret": SECRET,
                "allow_registration": True,
                "audiences": [AUD],
                "single_use_tokens": True,
            }
        else:
            daemon = Daemon(
                directory,
                f'secret = "{SECRET}"\nallow_registration = true\naudiences = ["{AUD}"]\n'
                "single_use_tokens = true\n[server]\nworkers = 1\n",
            )
            stack.callback(daemon.stop)
            daemon.start()
            module_config = {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 5}}
        yield stack.enter_context(running_cluster(directory, postgres, f"synapse_replay_{mode}", module_config))


def jwt(sub: str, **extra) -> str:
    return token(claims(sub, aud=AUD, **extra))


def test_every_process_lists_the_login_type(cluster):
    for process in cluster.processes:
        status, body = process.request("GET", "/_matrix/client/v3/login")
        assert status == 200, (process.name, body)
        assert {"type": LOGIN_TYPE} in body["flows"], process.name


def test_logins_on_both_workers(cluster):
    for worker in cluster.workers:
        status, body = worker.login("alice", jwt("alice"))
        assert (status, body.get("user_id")) == (200, "@alice:test.local"), (worker.name, body)
        wait_until(lambda w=worker: "JWT login accepted for @alice:test.local" in w.log_text(), 5, "log line")
    # Refused on a worker as on main.
    worker = cluster.workers[1]
    status, body = worker.login("alice", token(claims("alice", aud=AUD), secret=SECRET[::-1]))
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    line = "JWT login rejected for @alice:test.local: bad_signature"
    wait_until(lambda: line in worker.log_text(), 5, "log line")


def module_errors(process) -> list[str]:
    return [line for line in process.log_text().splitlines() if " synapse_token_auth" in line and " ERROR " in line]


def test_parallel_first_logins_across_workers_create_one_account(cluster):
    # Every racer carries the same display name. The one that registers the account sets it
    # there; the others find it already set and leave the profile alone. (Had each of them set
    # it, 19 concurrent profile updates of one user on PostgreSQL would make Synapse give up on
    # some with serialization failures: logins that succeed, and a claim logged as not applied.)
    tok = jwt("racer", displayname="Racer One")
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: cluster.workers[i % 2].login("racer", tok), range(20)))
    assert [status for status, _ in results] == [200] * 20, results
    assert {body["user_id"] for _, body in results} == {"@racer:test.local"}
    assert cluster.sql("SELECT name FROM users WHERE lower(name) LIKE %s", ("%racer%",)) == [("@racer:test.local",)]
    assert cluster.sql("SELECT count(*) FROM devices WHERE user_id = %s", ("@racer:test.local",)) == [(20,)]
    assert cluster.sql("SELECT displayname FROM profiles WHERE full_user_id = %s", ("@racer:test.local",)) == [
        ("Racer One",)
    ]
    # One racer registered the account; the others found it (M_USER_IN_USE) and logged in.
    registered = "JWT login accepted for @racer:test.local (alg=HS512 kid= key=primary, registered)"
    wait_until(lambda: any(registered in w.log_text() for w in cluster.workers), 5, "the registration's log line")
    assert sum(w.log_text().count(registered) for w in cluster.workers) == 1
    for process in cluster.processes:
        assert module_errors(process) == [], process.name


def test_a_new_display_name_is_applied_on_the_next_login(cluster):
    status, body = cluster.workers[0].login("racer", jwt("racer", displayname="Racer Two"))
    assert status == 200, body
    assert cluster.sql("SELECT displayname FROM profiles WHERE full_user_id = %s", ("@racer:test.local",)) == [
        ("Racer Two",)
    ]


def test_access_token_from_one_worker_works_on_the_other(cluster):
    first, second = cluster.workers
    status, body = first.login("bob", jwt("bob"))
    assert status == 200, body
    for process in (second, cluster.main):
        status, whoami = process.request("GET", "/_matrix/client/v3/account/whoami", access_token=body["access_token"])
        assert (status, whoami.get("user_id"), whoami.get("device_id")) == (
            200,
            "@bob:test.local",
            body["device_id"],
        ), process.name


def scrape(process) -> dict[tuple[str, tuple], float]:
    """The module's samples on the process's metrics listener: (name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(process.metrics()):
        for sample in family.samples:
            if sample.name.startswith("synapse_token_auth_"):
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def logins(samples, result: str, reason: str = "") -> float:
    labels = (("login_type", LOGIN_TYPE), ("reason", reason), ("result", result))
    return samples.get(("synapse_token_auth_logins_total", labels), 0.0)


def test_each_process_exports_the_logins_it_served(cluster):
    main, first, second = cluster.processes
    before = {p.name: scrape(p) for p in cluster.processes}
    expired = token({"sub": "carol", "aud": AUD, "exp": 1})
    plan = {
        first: [jwt("carol")] * 3 + [token(claims("carol", aud=AUD), secret=SECRET[::-1])],
        second: [jwt("carol")] * 2,
        main: [jwt("carol"), expired, expired],
    }
    for process, tokens in plan.items():
        for tok in tokens:
            process.login("carol", tok)
    expected = {
        first.name: {("accepted", ""): 3, ("rejected", "bad_signature"): 1, ("rejected", "expired"): 0},
        second.name: {("accepted", ""): 2, ("rejected", "bad_signature"): 0, ("rejected", "expired"): 0},
        main.name: {("accepted", ""): 1, ("rejected", "bad_signature"): 0, ("rejected", "expired"): 2},
    }
    for process in cluster.processes:
        after = scrape(process)
        counted = {key: logins(after, *key) - logins(before[process.name], *key) for key in expected[process.name]}
        assert counted == expected[process.name], process.name
        verified = after[("synapse_token_auth_verify_duration_seconds_count", ())]
        verified -= before[process.name][("synapse_token_auth_verify_duration_seconds_count", ())]
        assert verified == len(plan[process]), process.name
        # No published keys here: the fetch counters are there, at 0.
        for outcome in ("ok", "failed"):
            assert after[("synapse_token_auth_key_fetches_total", (("outcome", outcome),))] == 0
        # Bounded labels: reason codes, never a user.
        assert not [key for key in after if any("carol" in value for _, value in key[1])]


def test_no_module_error_reached_synapse(cluster):
    for process in cluster.processes:
        log = process.log_text()
        assert "Failed to run module API callback" not in log, process.name
        assert module_errors(process) == [], process.name


def test_a_single_use_token_logs_in_once_across_all_workers(replay_cluster):
    before = {p.name: scrape(p) for p in replay_cluster.processes}
    tok = jwt("dave", jti="dave-once")
    targets = [replay_cluster.workers[i % 2] for i in range(50)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda worker: worker.login("dave", tok), targets))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [403] * 49, statuses
    # One row in the shared database, whichever worker won.
    assert replay_cluster.sql("SELECT replay_key FROM synapse_token_auth_used_tokens") == [("jti:dave-once",)]
    # The workers' metrics add up to one login and 49 replays, and main served none of them.
    replayed = accepted = 0.0
    for process in replay_cluster.processes:
        after = scrape(process)
        replayed += logins(after, "rejected", "token_replayed") - logins(
            before[process.name], "rejected", "token_replayed"
        )
        accepted += logins(after, "accepted") - logins(before[process.name], "accepted")
    assert (accepted, replayed) == (1, 49)
    # A fresh token for the same user still logs in, on the other process.
    status, body = replay_cluster.main.login("dave", jwt("dave", jti="dave-twice"))
    assert status == 200, body
