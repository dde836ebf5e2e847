"""Walle's deployment simulation: hand cases, policies, percentage buckets, rollback, load."""

import heapq
import itertools
import json
import math

import numpy as np
import pytest

from graphrec.cli import main
from graphrec.errors import ConfigError
from graphrec.ondevice.walle.rollout import (
    TIERS,
    Delivery,
    Population,
    PopulationConfig,
    ReleasePolicy,
    fifo_start_times,
    rollout_bucket,
    sample_population,
    simulate_rollout,
)

# no queues, no latency, 1-second downloads: times easy to check by hand
FAST = dict(push_rate=math.inf, cdn_slots=100_000, notice_latency_s=0.0, poll_rtt_s=0.0,
            package_bytes=10, download_rate=10.0)  # fmt: skip


def test_push_three_always_online_devices_exact_times():
    pop = Population.from_sessions([[(0, 100)]] * 3, 100)
    delivery = Delivery(push_rate=1.0, notice_latency_s=0.5, cdn_slots=1, package_bytes=2,
                        download_rate=1.0, install_s=1.0)  # fmt: skip
    r = simulate_rollout(pop, ReleasePolicy(stages=((10.0, 100.0),)), delivery)
    # notices sent at 10, 11, 12 (1/s), arrive 0.5 s later; one CDN slot, 2 s per download
    np.testing.assert_array_equal(r.learn_time, [10.5, 11.5, 12.5])
    np.testing.assert_array_equal(r.download_start, [10.5, 12.5, 14.5])
    np.testing.assert_array_equal(r.install_time, [13.5, 15.5, 17.5])
    assert r.summary["t99_online_s"] == 18.0 and r.summary["max_cdn_wait_s"] == 2.0
    assert r.summary["notices"] == 3 and r.summary["pulls"] == 3 and r.summary["polls"] == 0
    assert r.summary["bytes"] == pytest.approx(3 * 256 + 3 * 2)
    assert r.coverage_at(15.0) == pytest.approx(1 / 3)
    assert r.coverage_at(17.0) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(r.version_at(16.0), [2, 2, 1])


def test_offline_device_gets_notice_at_reconnect_and_poll_follows_its_phase():
    # device 0 online throughout; device 1 offline from 5 to 50; device 2's session began at -3
    pop = Population.from_sessions([[(0, 100)], [(0, 5), (50, 100)], [(-3, 100)]], 100)
    policy = ReleasePolicy(stages=((10.0, 100.0),))
    push = simulate_rollout(pop, policy, Delivery(install_s=1.0, **FAST))
    np.testing.assert_array_equal(push.learn_time, [10, 50, 10])
    np.testing.assert_array_equal(push.install_time, [12, 52, 12])
    poll = simulate_rollout(pop, policy, Delivery(mode="poll", poll_s=15.0, install_s=1.0, **FAST))
    # polls at 0, 15, ...; at 0 (reconnect) 50, ...; at -3 + 15 k -> 12
    np.testing.assert_array_equal(poll.learn_time, [15, 50, 12])
    # polls in [0, 100): 7 + (1 + 4) + 6
    assert poll.summary["polls"] == 18 and poll.summary["requests"] == 21


def test_fifo_matches_an_event_by_event_queue():
    rng = np.random.default_rng(0)
    for servers, service in [(1, 0.3), (3, 1.0), (7, 2.5)]:
        arrivals = np.sort(rng.exponential(0.4, 200).cumsum())
        free = [0.0] * servers
        expected = []
        for a in arrivals:
            start = max(a, heapq.heappop(free))
            heapq.heappush(free, start + service)
            expected.append(start)
        np.testing.assert_allclose(fifo_start_times(arrivals, servers, service), expected)


def test_policy_selects_exactly_the_matching_devices():
    attrs = list(itertools.product([7, 8, 9, 10], TIERS, [0, 1, 2, 3]))
    pop = Population.from_sessions(
        [[(0, 10)]] * len(attrs), 10,
        app_version=[a for a, _, _ in attrs], tier=[t for _, t, _ in attrs],
        group=[g for _, _, g in attrs],
    )  # fmt: skip
    policy = ReleasePolicy(app_versions=(8, 9), tiers=("low", "high"), groups=(1, 3))
    expected = [8 <= a <= 9 and t in ("low", "high") and g in (1, 3) for a, t, g in attrs]
    np.testing.assert_array_equal(policy.targets(pop), expected)
    assert sum(expected) == 8
    r = simulate_rollout(pop, policy, Delivery(**FAST))
    np.testing.assert_array_equal(np.isfinite(r.install_time), expected)
    # devices already on the release's version are not targeted
    assert not ReleasePolicy(version=1).targets(pop).any()


def test_percentage_buckets_are_stable_and_monotone():
    ids = np.arange(50_000)
    bucket = rollout_bucket(ids, salt=7)
    np.testing.assert_array_equal(bucket, rollout_bucket(ids, salt=7))
    assert not np.array_equal(bucket, rollout_bucket(ids, salt=8))
    previous = np.zeros(len(ids), dtype=bool)
    for percent in (0.5, 1, 10, 20, 50, 100):
        chosen = ReleasePolicy(stages=((0.0, percent),), salt=7).targets(
            Population.from_sessions([[(0, 1)]] * len(ids), 1)
        )
        assert (chosen >= previous).all()  # in the 10% -> in the 20%
        assert chosen.mean() == pytest.approx(percent / 100, abs=0.006)
        previous = chosen
    # the same device ids get the same choice whatever the seed or population size
    small = sample_population(PopulationConfig(devices=1000, horizon_s=100), seed=1)
    large = sample_population(PopulationConfig(devices=3000, horizon_s=100), seed=2)
    policy = ReleasePolicy(stages=((0.0, 30.0),), salt=7)
    np.testing.assert_array_equal(policy.targets(small), policy.targets(large)[:1000])


def test_staged_release_target_times():
    pop = Population.from_sessions([[(0, 400)]] * 5000, 400)
    policy = ReleasePolicy(stages=((0.0, 10.0), (100.0, 50.0), (200.0, 100.0)), salt=3)
    bucket = rollout_bucket(pop.device_id, 3)
    expected = np.where(bucket < 1000, 0.0, np.where(bucket < 5000, 100.0, 200.0))
    np.testing.assert_array_equal(policy.target_times(pop), expected)
    r = simulate_rollout(pop, policy, Delivery(install_s=1.0, **FAST))
    assert np.all(r.install_time == expected + 2.0)
    assert r.coverage_at(50.0) == 1.0 and r.coverage_at(100.0) < 0.25
    assert r.summary["t99_online_s"] == 202.0  # measured from the full-release stage on


@pytest.mark.parametrize("mode", ["push", "poll"])
def test_rollback_restores_previous_version_on_every_device_it_reached(mode):
    config = PopulationConfig(devices=3000, horizon_s=20_000, mean_online_s=300,
                              mean_offline_s=600)  # fmt: skip
    pop = sample_population(config, seed=5)
    rb = 900.0
    delivery = Delivery(mode=mode, poll_s=120.0, cdn_slots=20, push_rate=math.inf)
    r = simulate_rollout(pop, ReleasePolicy(rollback_at=rb), delivery)
    reached = np.isfinite(r.install_time)
    assert 0 < reached.sum() < pop.size
    assert np.all(np.isfinite(r.rollback_time[reached]))
    assert not np.isfinite(r.rollback_time[~reached]).any()
    assert np.all(r.rollback_time[reached] >= np.maximum(r.install_time[reached], rb))
    # every device back on its previous version once it has been online after the rollback
    np.testing.assert_array_equal(r.version_at(config.horizon_s), pop.package_version)
    assert r.summary["rolled_back"] == reached.sum()
    # devices offline at the rollback learn of it at their next reconnect
    offline = reached & (pop.first_online(np.full(pop.size, rb)) > rb)
    assert offline.sum() > 50
    after = np.maximum(r.install_time, rb)
    learn = pop.first_online(after) if mode == "push" else pop.first_poll(after, 120.0)
    np.testing.assert_allclose(r.rollback_time[offline], learn[offline] + 0.2 + 1.0)
    # no download starts after the rollback
    assert np.all(r.download_start[reached] < rb)


def test_same_seed_same_rollout():
    config = PopulationConfig(devices=2000, horizon_s=3600)
    policy = ReleasePolicy(tiers=("mid", "high"), stages=((0.0, 20.0), (600.0, 100.0)))
    runs = [simulate_rollout(sample_population(config, seed=s), policy, Delivery(mode="poll"))
            for s in (4, 4, 5)]  # fmt: skip
    for name in ("install_time", "coverage_online", "requests_per_s", "bytes_per_s"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))
    assert runs[0].summary == runs[1].summary
    assert not np.array_equal(runs[0].install_time, runs[2].install_time)


def test_polling_is_never_faster_than_push_for_always_online_devices():
    # unpaced notices: with push_rate, the last device of a burst waits its turn
    rng = np.random.default_rng(1)
    phases = rng.uniform(-500, 0, 50)
    pop = Population.from_sessions([[(p, 5000)] for p in phases], 5000)
    for start in rng.uniform(0, 1000, 5):
        policy = ReleasePolicy(stages=((float(start), 100.0),))
        push = simulate_rollout(pop, policy, Delivery(push_rate=math.inf))
        for poll_s in (1.0, 7.0, 60.0, 300.0):
            poll = simulate_rollout(pop, policy, Delivery(mode="poll", poll_s=poll_s))
            assert np.all(poll.install_time >= push.install_time)


def test_server_load_accounts_for_every_request_and_byte():
    config = PopulationConfig(devices=4000, horizon_s=3600, mean_online_s=600,
                              mean_offline_s=600)  # fmt: skip
    pop = sample_population(config, seed=0)
    delivery = Delivery(mode="poll", poll_s=45.0, cdn_slots=5, download_rate=5e5)
    r = simulate_rollout(pop, ReleasePolicy(), delivery, load_step_s=10.0)
    # polls: brute force over the sessions
    polls = 0
    for s, e in zip(pop.start.tolist(), pop.end.tolist()):
        t = s
        while t < e:
            polls += t >= 0
            t += 45.0
    assert r.summary["polls"] == polls == round(r.requests_per_s.sum() * 10) - r.summary["pulls"]
    done = r.download_start + delivery.download_s <= config.horizon_s
    expected = polls * 512 + done.sum() * delivery.package_bytes
    partial = r.download_start[np.isfinite(r.download_start) & ~done]
    expected += ((config.horizon_s - partial) * delivery.download_rate).sum()
    assert r.summary["bytes"] == pytest.approx(expected)
    assert r.bytes_per_s.max() <= 5 * 5e5 + r.requests_per_s.max() * 512 + 1e-6
    assert r.summary["max_cdn_wait_s"] > 0  # 5 slots are a bottleneck here


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReleasePolicy(stages=((0.0, 50.0), (10.0, 20.0))),
        lambda: ReleasePolicy(stages=((5.0, 10.0), (5.0, 20.0))),
        lambda: ReleasePolicy(stages=((0.0, 0.0),)),
        lambda: ReleasePolicy(tiers=("flagship",)),
        lambda: ReleasePolicy(app_versions=(9, 8)),
        lambda: ReleasePolicy(rollback_at=-1.0),
        lambda: Delivery(mode="pull"),
        lambda: Delivery(poll_s=0.0),
        lambda: Delivery(cdn_slots=0),
        lambda: PopulationConfig(devices=0),
        lambda: PopulationConfig(tier_shares=(0.5, 0.5, 0.5)),
        lambda: Population.from_sessions([[(0, 5), (3, 8)]], 10),
    ],
)
def test_invalid_arguments_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_cli_rollout_sim(capsys):
    argv = ["walle", "rollout-sim", "--devices", "3000", "--mode", "poll", "--poll-seconds", "60",
            "--tier", "mid", "--tier", "high", "--percent", "50", "--rollback-at", "3000",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "poll" and out["poll_s"] == 60.0 and out["devices"] == 3000
    assert 0.3 < out["targeted"] / 3000 < 0.4  # (mid 50% + high 20%) x 50%
    assert 60 <= out["t99_online_s"] <= 120 and out["rolled_back"] > 0
    assert out["requests"] == out["polls"] + out["pulls"] and out["notices"] == 0
    assert main(["walle", "rollout-sim", "--devices", "500", "--stage", "0:5",
                 "--stage", "600:100"]) == 0  # fmt: skip
    assert "time to 99% of online targeted devices" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra", [["--percent", "0"], ["--stage", "10"], ["--mode", "pull"], ["--tier", "flagship"]]
)
def test_cli_rollout_sim_bad_options(extra, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["walle", "rollout-sim", *extra])
    assert exc.value.code == 2 and extra[0] in capsys.readouterr().err
