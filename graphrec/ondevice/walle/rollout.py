"""Walle's deployment platform: a task package released to a device population, simulated.

The model
---------
* **Devices** carry an app version, a device tier (``low``, ``mid``, ``high``), a user group, a
  stable id and the package version they run. Each alternates online and offline sessions with
  exponential lengths (means ``mean_online_s`` and ``mean_offline_s``); at time 0 a device is
  online with the stationary probability ``on / (on + off)``, and a session in progress began
  ``Exp(mean_online_s)`` earlier (the memoryless age), which fixes the phase of its polls.
* **Release policy**: app version range, tiers, groups and a staged percentage rollout (gray ->
  full): stage ``k`` starts at ``t_k`` and targets the devices whose bucket
  ``splitmix64(id ^ salt) mod 10000`` is below ``100 * percent_k``, so a device in the 10% is
  in the 20%, and the choice does not depend on the seed or the population size.
* **Push-then-pull**: when a device becomes targeted the server queues a small notice; the
  notice is ready at once for an online device and at the next reconnect for an offline one;
  the push service sends ``push_rate`` notices per second (one FIFO queue) and a notice arrives
  ``notice_latency_s`` after it is sent. The device then pulls the package.
* **Pull-only polling**: a device polls when it comes online and every ``poll_s`` seconds while
  online; a poll at or after its target time tells it about the release ``poll_rtt_s`` later,
  and it pulls the package.
* **CDN**: ``cdn_slots`` concurrent downloads at ``download_rate`` bytes/s each, so one pull
  holds a slot for ``package_bytes / download_rate`` seconds and at most
  ``cdn_slots * download_rate`` bytes/s leave the CDN; pulls wait in one FIFO queue. The
  package is installed ``install_s`` after its download ends. A device is assumed to stay online
  through its notice, download and install (the queue waits are reported).
* **Rollback** at ``rollback_at``: notices not sent and downloads not started by then are
  cancelled; every device that installs the new version learns of the rollback (a notice, or
  its next poll) at its first online moment at or after ``max(rollback_at, install time)`` and
  restores its previous version ``install_s`` later (the previous package stays on the device,
  so nothing is downloaded).

Server load counts HTTP requests (polls and pulls), pushed notices (messages on connections the
app keeps open anyway) and bytes (notices, polls, package bytes spread over each download).

The simulation is event-driven and vectorised: session boundaries, notices, polls, pulls,
installs and rollbacks are generated in bulk as numpy arrays over devices; events that compete
for a shared resource (the push service, the CDN) are served in time order by an exact
vectorised FIFO recursion (:func:`fifo_start_times`), never one Python object per device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from graphrec.errors import ConfigError

TIERS = ("low", "mid", "high")
MODES = ("push", "poll")
BUCKETS = 10_000  # percentage buckets: 0.01% resolution
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def rollout_bucket(device_id: np.ndarray, salt: int = 0) -> np.ndarray:
    """The stable rollout bucket in ``[0, 10000)`` of each device id (splitmix64 of id ^ salt).

    A device is in a ``p``% rollout when its bucket is ``< 100 p``; the same id and salt always
    give the same bucket.
    """
    z = np.asarray(device_id, dtype=np.uint64) ^ np.uint64(salt & (2**64 - 1))
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(BUCKETS)).astype(np.int64)


def fifo_start_times(arrivals: np.ndarray, servers: int, service_s: float) -> np.ndarray:
    """Service start times of a FIFO queue with ``servers`` identical servers.

    ``arrivals`` (n,) must be sorted ascending; every job takes ``service_s``. With equal
    service times the j-th job waits for job ``j - servers``:
    ``start_j = max(a_j, start_{j-c} + D)``, so along each residue class ``j = r + m c``,
    ``start = m D + max_{l <= m} (a_{r + l c} - l D)``, one cumulative maximum.
    """
    a = np.asarray(arrivals, dtype=np.float64)
    n = len(a)
    if n == 0 or service_s == 0:
        return a.copy()
    c = min(servers, n)
    rows = -(-n // c)
    padded = np.full(rows * c, np.inf)
    padded[:n] = a
    grid = padded.reshape(rows, c)
    shift = np.arange(rows, dtype=np.float64)[:, None] * service_s
    reduced = grid - shift
    best = np.maximum.accumulate(reduced, axis=0)
    start = np.where(best == reduced, grid, best + shift)
    return start.ravel()[:n]


@dataclass(frozen=True)
class PopulationConfig:
    """How :func:`sample_population` draws devices; times in seconds."""

    devices: int = 1_000_000
    horizon_s: float = 7200.0
    mean_online_s: float = 1200.0
    mean_offline_s: float = 2400.0
    app_versions: tuple[int, ...] = (7, 8, 9, 10)
    app_version_shares: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
    tier_shares: tuple[float, float, float] = (0.3, 0.5, 0.2)
    groups: int = 10
    package_version: int = 1

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError(f"devices must be >= 1, got {self.devices}")
        for name in ("horizon_s", "mean_online_s", "mean_offline_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        if len(self.app_versions) != len(self.app_version_shares) or not self.app_versions:
            raise ConfigError(
                "app_version_shares must give one share per app version, got "
                f"{len(self.app_version_shares)} for {len(self.app_versions)}"
            )
        for name in ("app_version_shares", "tier_shares"):
            shares = np.asarray(getattr(self, name), dtype=float)
            if len(shares) == 0 or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
                raise ConfigError(f"{name} must be >= 0 and sum to 1, got {tuple(shares)}")
        if len(self.tier_shares) != len(TIERS):
            raise ConfigError(f"tier_shares must have {len(TIERS)} entries ({', '.join(TIERS)})")
        if self.groups < 1:
            raise ConfigError(f"groups must be >= 1, got {self.groups}")


@dataclass
class Population:
    """Devices and their online sessions.

    Attributes (n devices, S sessions): ``device_id``, ``app_version``, ``tier`` (index into
    :data:`TIERS`), ``group``, ``package_version`` (n,); ``start``, ``end`` (S,) the online
    sessions ``[start, end)`` sorted by device, then time, with ``end <= horizon_s``;
    ``indptr`` (n + 1,) so device ``d`` owns sessions ``indptr[d]:indptr[d + 1]``.
    """

    device_id: np.ndarray
    app_version: np.ndarray
    tier: np.ndarray
    group: np.ndarray
    package_version: np.ndarray
    start: np.ndarray
    end: np.ndarray
    indptr: np.ndarray
    horizon_s: float

    @property
    def size(self) -> int:
        """Number of devices."""
        return len(self.device_id)

    @classmethod
    def from_sessions(
        cls,
        sessions: Sequence[Sequence[tuple[float, float]]],
        horizon_s: float,
        *,
        app_version: Sequence[int] | None = None,
        tier: Sequence[str] | None = None,
        group: Sequence[int] | None = None,
        package_version: int = 1,
    ) -> Population:
        """A population from explicit ``[(start, end), ...]`` online sessions per device."""
        n = len(sessions)
        flat = [(s, e) for per_device in sessions for s, e in per_device]
        for d, per_device in enumerate(sessions):
            last = -math.inf
            for s, e in per_device:
                if not (last <= s < e <= horizon_s):
                    raise ConfigError(
                        f"sessions of device {d} must be disjoint, sorted and within "
                        f"[.., horizon_s={horizon_s}], got {list(per_device)}"
                    )
                last = e
        tiers = ["mid"] * n if tier is None else list(tier)
        unknown = sorted(set(tiers) - set(TIERS))
        if unknown:
            raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {unknown}")
        times = np.array(flat, dtype=np.float64).reshape(-1, 2)
        return cls(
            device_id=np.arange(n, dtype=np.int64),
            app_version=np.asarray([1] * n if app_version is None else app_version, np.int64),
            tier=np.array([TIERS.index(t) for t in tiers], dtype=np.int8),
            group=np.asarray([0] * n if group is None else group, dtype=np.int64),
            package_version=np.full(n, package_version, dtype=np.int64),
            start=times[:, 0].copy(),
            end=times[:, 1].copy(),
            indptr=np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64),
            horizon_s=float(horizon_s),
        )

    def _first_session_ending_after(self, q: np.ndarray) -> np.ndarray:
        """Per device, the index of its first session with ``end > q`` (-1 if none)."""
        found = np.full(self.size, -1, dtype=np.int64)
        pos = self.indptr[:-1].copy()
        active = np.flatnonzero(np.isfinite(q) & (pos < self.indptr[1:]))
        while len(active):
            hit = self.end[pos[active]] > q[active]
            found[active[hit]] = pos[active[hit]]
            miss = active[~hit]
            pos[miss] += 1
            active = miss[pos[miss] < self.indptr[miss + 1]]
        return found

    def first_online(self, q: np.ndarray) -> np.ndarray:
        """(n,) the first time ``>= q`` each device is online (``inf``: not before the horizon)."""
        q = np.asarray(q, dtype=np.float64)
        i = self._first_session_ending_after(q)
        out = np.full(self.size, np.inf)
        ok = i >= 0
        out[ok] = np.maximum(self.start[i[ok]], q[ok])
        return out

    def first_poll(self, q: np.ndarray, poll_s: float) -> np.ndarray:
        """(n,) each device's first poll at or after ``q`` (polls at ``start + k poll_s``)."""
        q = np.asarray(q, dtype=np.float64)
        i = self._first_session_ending_after(q)
        out = np.full(self.size, np.inf)
        ok = np.flatnonzero(i >= 0)
        s, e, qq = self.start[i[ok]], self.end[i[ok]], q[ok]
        poll = s + np.ceil(np.maximum(qq - s, 0.0) / poll_s) * poll_s
        late = poll >= e
        nxt = i[ok] + 1
        has_next = nxt < self.indptr[ok + 1]
        poll[late & has_next] = self.start[nxt[late & has_next]]
        poll[late & ~has_next] = np.inf
        out[ok] = poll
        return out

    def poll_counts(self, poll_s: float) -> np.ndarray:
        """(S,) polls each session makes within ``[0, horizon_s)``."""
        first = np.maximum(np.ceil(-self.start / poll_s), 0.0)
        last = np.ceil((self.end - self.start) / poll_s) - 1.0
        return np.maximum(last - first + 1.0, 0.0).astype(np.int64)


def sample_population(config: PopulationConfig, seed: int = 0) -> Population:
    """Draw ``config.devices`` devices and their alternating exponential online sessions."""
    rng = np.random.default_rng(seed)
    n, horizon = config.devices, config.horizon_s
    on, off = config.mean_online_s, config.mean_offline_s
    app_version = rng.choice(
        np.asarray(config.app_versions, np.int64), size=n, p=config.app_version_shares
    )
    tier = rng.choice(len(TIERS), size=n, p=config.tier_shares).astype(np.int8)
    group = rng.integers(0, config.groups, size=n)
    online = rng.random(n) < on / (on + off)
    start = np.where(online, -rng.exponential(on, n), rng.exponential(off, n))
    end = np.where(online, rng.exponential(on, n), start + rng.exponential(on, n))
    dev = np.arange(n, dtype=np.int64)
    starts, ends, devs = [], [], []
    while len(dev):
        keep = start < horizon
        dev, start, end = dev[keep], start[keep], end[keep]
        starts.append(start)
        ends.append(np.minimum(end, horizon))
        devs.append(dev)
        start = end + rng.exponential(off, len(dev))
        end = start + rng.exponential(on, len(dev))
    all_dev = np.concatenate(devs)
    order = np.argsort(all_dev, kind="stable")
    return Population(
        device_id=np.arange(n, dtype=np.int64),
        app_version=app_version,
        tier=tier,
        group=group,
        package_version=np.full(n, config.package_version, dtype=np.int64),
        start=np.concatenate(starts)[order],
        end=np.concatenate(ends)[order],
        indptr=np.concatenate([[0], np.cumsum(np.bincount(all_dev, minlength=n))]),
        horizon_s=float(horizon),
    )


@dataclass(frozen=True)
class ReleasePolicy:
    """Which devices get package ``version``, and when.

    ``app_versions``: inclusive ``(low, high)`` range (None: all); ``tiers``: names from
    :data:`TIERS`; ``groups``: user groups; ``stages``: ``(start_s, percent)`` pairs with
    increasing start times and non-decreasing percents (gray -> full release); ``salt``: the
    release's hash salt of the percentage buckets; ``rollback_at``: time of a rollback (None:
    none).
    """

    version: int = 2
    app_versions: tuple[int, int] | None = None
    tiers: tuple[str, ...] | None = None
    groups: tuple[int, ...] | None = None
    stages: tuple[tuple[float, float], ...] = ((0.0, 100.0),)
    salt: int = 0
    rollback_at: float | None = None

    def __post_init__(self) -> None:
        if self.app_versions is not None and (
            len(self.app_versions) != 2 or self.app_versions[0] > self.app_versions[1]
        ):
            raise ConfigError(f"app_versions must be (low, high), got {self.app_versions}")
        if self.tiers is not None:
            unknown = sorted(set(self.tiers) - set(TIERS))
            if unknown or not self.tiers:
                raise ConfigError(f"tiers must be names from {', '.join(TIERS)}, got {unknown}")
        if self.groups is not None and not self.groups:
            raise ConfigError("groups must name at least one group (or be None for all)")
        if not self.stages:
            raise ConfigError("stages must hold at least one (start_s, percent) pair")
        times = [float(t) for t, _ in self.stages]
        percents = [float(p) for _, p in self.stages]
        if any(not math.isfinite(t) or t < 0 for t in times) or times != sorted(set(times)):
            raise ConfigError(f"stage start times must be >= 0 and increasing, got {times}")
        if any(not 0 < p <= 100 for p in percents) or percents != sorted(percents):
            raise ConfigError(f"stage percents must be in (0, 100] and non-decreasing, got "
                              f"{percents}")  # fmt: skip
        if self.rollback_at is not None and not (
            math.isfinite(self.rollback_at) and self.rollback_at >= 0
        ):
            raise ConfigError(f"rollback_at must be a time >= 0, got {self.rollback_at}")

    def matches(self, pop: Population) -> np.ndarray:
        """(n,) bool: app version, tier and group filters (percentages aside)."""
        mask = pop.package_version != self.version
        if self.app_versions is not None:
            low, high = self.app_versions
            mask &= (pop.app_version >= low) & (pop.app_version <= high)
        if self.tiers is not None:
            mask &= np.isin(pop.tier, [TIERS.index(t) for t in self.tiers])
        if self.groups is not None:
            mask &= np.isin(pop.group, list(self.groups))
        return mask

    def target_times(self, pop: Population) -> np.ndarray:
        """(n,) the start of the first stage that targets each device (``inf``: never)."""
        bucket = rollout_bucket(pop.device_id, self.salt)
        out = np.full(pop.size, np.inf)
        for start, percent in reversed(self.stages):
            out[bucket < round(percent * BUCKETS / 100)] = start
        out[~self.matches(pop)] = np.inf
        return out

    def targets(self, pop: Population, at: float = math.inf) -> np.ndarray:
        """(n,) bool: the devices targeted by time ``at`` (default: by the last stage)."""
        times = self.target_times(pop)
        return np.isfinite(times) & (times <= at)


@dataclass(frozen=True)
class Delivery:
    """How the package reaches the devices: ``mode`` push (push-then-pull) or poll, with the
    limits of the push service and the CDN; times in seconds, sizes in bytes."""

    mode: str = "push"
    poll_s: float = 300.0
    poll_rtt_s: float = 0.2
    notice_latency_s: float = 0.2
    push_rate: float = 10_000.0
    package_bytes: int = 1_000_000
    cdn_slots: int = 10_000
    download_rate: float = 2_000_000.0
    install_s: float = 1.0
    notice_bytes: int = 256
    poll_bytes: int = 512

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("poll_s", "download_rate", "push_rate"):
            value = getattr(self, name)
            if not value > 0 or math.isnan(value) or (name == "poll_s" and math.isinf(value)):
                raise ConfigError(f"{name} must be a number > 0, got {value}")
        for name in ("poll_rtt_s", "notice_latency_s", "install_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("package_bytes", "notice_bytes", "poll_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cdn_slots < 1:
            raise ConfigError(f"cdn_slots must be >= 1, got {self.cdn_slots}")

    @property
    def download_s(self) -> float:
        """Seconds one download holds a CDN slot."""
        return self.package_bytes / self.download_rate


@dataclass
class RolloutResult:
    """Per-device event times (n,) (``inf``: never), curves and a summary.

    ``target_time``: when the policy targets the device; ``learn_time``: when it learns of the
    release (notice arrival or poll reply); ``download_start``; ``install_time``;
    ``rollback_time``: when it is back on its previous version. ``times`` (T,) with
    ``coverage_online`` (share of the online targeted devices on the new version) and
    ``coverage_all`` (share of all targeted devices); ``load_times`` (B,) bin starts with
    ``requests_per_s`` (polls and pulls), ``notices_per_s`` and ``bytes_per_s``.
    """

    mode: str
    version: int
    previous: np.ndarray
    target_time: np.ndarray
    learn_time: np.ndarray
    download_start: np.ndarray
    install_time: np.ndarray
    rollback_time: np.ndarray
    times: np.ndarray
    coverage_online: np.ndarray
    coverage_all: np.ndarray
    load_times: np.ndarray
    requests_per_s: np.ndarray
    notices_per_s: np.ndarray
    bytes_per_s: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def version_at(self, t: float) -> np.ndarray:
        """(n,) the package version each device runs at time ``t``."""
        new = (self.install_time <= t) & (t < self.rollback_time)
        return np.where(new, self.version, self.previous)

    def coverage_at(self, t: float, online: bool = True) -> float:
        """Coverage (online targeted devices, or all targeted) at the last curve time <= t."""
        i = max(int(np.searchsorted(self.times, t, side="right")) - 1, 0)
        return float((self.coverage_online if online else self.coverage_all)[i])


def _covering(starts: np.ndarray, ends: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """How many intervals ``[start, end)`` contain each grid time."""
    return np.searchsorted(np.sort(starts), grid, side="right") - np.searchsorted(
        np.sort(ends), grid, side="right"
    )


def _online_intervals(
    pop: Population, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The online sessions clipped to each device's ``[lo, hi)``; empty pieces dropped."""
    counts = np.diff(pop.indptr)
    s = np.maximum(pop.start, np.repeat(lo, counts))
    e = np.minimum(pop.end, np.repeat(hi, counts))
    keep = s < e
    return s[keep], e[keep]


def _first_reach(
    pop: Population, delivery: Delivery, q: np.ndarray, sent: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(send, learn) per device for a message due from time ``q``: push sends a notice through
    the FIFO channel at ``push_rate`` (after ``sent`` (m,), the sorted send times of earlier
    notices) once the device is online; poll answers the device's next poll."""
    if delivery.mode == "poll":
        ready = pop.first_poll(q, delivery.poll_s)
        return ready, ready + delivery.poll_rtt_s
    ready = pop.first_online(q)
    order = np.argsort(ready, kind="stable")
    reach = ready[order]
    finite = np.isfinite(reach)
    prior = np.empty(0) if sent is None else sent
    queued = fifo_start_times(np.concatenate([prior, reach[finite]]), 1, 1 / delivery.push_rate)
    send = np.full(pop.size, np.inf)
    send[order[finite]] = queued[len(prior) :]
    return send, send + delivery.notice_latency_s


def simulate_rollout(
    pop: Population,
    policy: ReleasePolicy,
    delivery: Delivery,
    *,
    curve_step_s: float = 1.0,
    load_step_s: float = 1.0,
    progress: bool | None = False,
) -> RolloutResult:
    """Release ``policy.version`` to ``pop`` by ``delivery`` over ``[0, pop.horizon_s)``.

    ``curve_step_s`` and ``load_step_s`` are the resolutions of the coverage curves and of the
    load bins; ``progress`` shows a tqdm bar over the steps (None: only on a terminal).
    """
    for name, value in (("curve_step_s", curve_step_s), ("load_step_s", load_step_s)):
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    horizon = pop.horizon_s
    rb = math.inf if policy.rollback_at is None else float(policy.rollback_at)
    steps = tqdm(total=5, desc="rollout", disable=progress if progress is None else not progress)

    steps.set_postfix_str("targets and notices")
    target = policy.target_times(pop)
    ready, learn = _first_reach(pop, delivery, target)
    sent = ready < rb  # notices not sent (polls not answered) by the rollback are cancelled
    learn = np.where(sent, learn, np.inf)
    steps.update()

    steps.set_postfix_str("CDN queue")
    order = np.argsort(learn, kind="stable")
    pulls = order[np.isfinite(learn[order])]
    start_sorted = fifo_start_times(learn[pulls], delivery.cdn_slots, delivery.download_s)
    download_start = np.full(pop.size, np.inf)
    started = start_sorted < rb  # downloads not started by the rollback are cancelled
    download_start[pulls[started]] = start_sorted[started]
    install = download_start + delivery.download_s + delivery.install_s
    steps.update()

    steps.set_postfix_str("rollback")
    rollback = np.full(pop.size, np.inf)
    if math.isfinite(rb):
        installed = np.isfinite(install)
        q = np.where(installed, np.maximum(install, rb), np.inf)
        rb_ready, rb_learn = _first_reach(pop, delivery, q, np.sort(ready[sent]))
        rollback = np.where(installed, rb_learn + delivery.install_s, np.inf)
        notices = np.concatenate([ready[sent], rb_ready[np.isfinite(rb_ready)]])
    else:
        notices = ready[sent]
    steps.update()

    steps.set_postfix_str("coverage curves")
    grid = np.arange(0.0, horizon, curve_step_s)
    targeted_online = _covering(*_online_intervals(pop, target, np.full(pop.size, np.inf)), grid)
    new_online = _covering(*_online_intervals(pop, install, rollback), grid)
    targeted_all = np.searchsorted(np.sort(target), grid, side="right")
    new_all = _covering(install[np.isfinite(install)], rollback[np.isfinite(install)], grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov_online = np.where(targeted_online > 0, new_online / targeted_online, 0.0)
        cov_all = np.where(targeted_all > 0, new_all / targeted_all, 0.0)
    steps.update()

    steps.set_postfix_str("server load")
    bins = int(math.ceil(horizon / load_step_s))
    load = _Load(bins, load_step_s)
    pull_times = learn[pulls]
    load.add_requests(pull_times)
    polls = 0
    if delivery.mode == "push":
        load.add_notices(notices, delivery.notice_bytes)
    else:
        notices = np.empty(0)
        polls = load.add_polls(pop, delivery.poll_s, delivery.poll_bytes)
    load.add_downloads(download_start[np.isfinite(download_start)], delivery)
    steps.update()
    steps.close()

    result = RolloutResult(
        mode=delivery.mode,
        version=policy.version,
        previous=pop.package_version,
        target_time=target,
        learn_time=learn,
        download_start=download_start,
        install_time=install,
        rollback_time=rollback,
        times=grid,
        coverage_online=cov_online,
        coverage_all=cov_all,
        load_times=np.arange(bins) * load_step_s,
        requests_per_s=load.requests / load_step_s,
        notices_per_s=load.notices / load_step_s,
        bytes_per_s=load.bytes / load_step_s,
    )
    waits = start_sorted[started] - learn[pulls[started]]
    in_window = pull_times < horizon
    result.summary = {
        "mode": delivery.mode,
        "poll_s": delivery.poll_s if delivery.mode == "poll" else None,
        "devices": pop.size,
        "targeted": int(np.isfinite(target).sum()),
        "installed": int((install <= horizon).sum()),
        "rolled_back": int((rollback <= horizon).sum()),
        "t99_online_s": _time_to(grid, cov_online, 0.99, _last_stage(policy)),
        "t99_all_s": _time_to(grid, cov_all, 0.99, _last_stage(policy)),
        "coverage_online_end": float(cov_online[-1]),
        "coverage_all_end": float(cov_all[-1]),
        "notices": int((notices < horizon).sum()),
        "polls": polls,
        "pulls": int(in_window.sum()),
        "requests": polls + int(in_window.sum()),
        "bytes": float(load.bytes.sum()),
        "peak_requests_per_s": float(result.requests_per_s.max(initial=0.0)),
        "peak_notices_per_s": float(result.notices_per_s.max(initial=0.0)),
        "peak_bytes_per_s": float(result.bytes_per_s.max(initial=0.0)),
        "max_cdn_wait_s": float(waits.max(initial=0.0)),
    }
    return result


def _last_stage(policy: ReleasePolicy) -> float:
    return float(policy.stages[-1][0])


def _time_to(grid: np.ndarray, curve: np.ndarray, level: float, after: float) -> float | None:
    """The first grid time ``>= after`` where ``curve >= level`` (None: never)."""
    hit = np.flatnonzero((grid >= after) & (curve >= level))
    return float(grid[hit[0]]) if len(hit) else None


class _Load:
    """Requests, notices and bytes per load bin over ``[0, horizon)``."""

    def __init__(self, bins: int, step: float) -> None:
        self.step = step
        self.requests = np.zeros(bins)
        self.notices = np.zeros(bins)
        self.bytes = np.zeros(bins)

    def _bin(self, times: np.ndarray) -> np.ndarray:
        idx = np.floor(times / self.step).astype(np.int64)
        return idx[(idx >= 0) & (idx < len(self.bytes))]

    def add_requests(self, times: np.ndarray) -> None:
        self.requests += np.bincount(self._bin(times), minlength=len(self.requests))

    def add_notices(self, times: np.ndarray, size: int) -> None:
        counts = np.bincount(self._bin(times), minlength=len(self.notices))
        self.notices += counts
        self.bytes += counts * size

    def add_polls(self, pop: Population, poll_s: float, size: int, chunk: int = 4_000_000) -> int:
        """Every poll of every session, binned chunk by chunk; returns their number."""
        counts = pop.poll_counts(poll_s)
        first = np.maximum(np.ceil(-pop.start / poll_s), 0.0)
        cum = np.cumsum(counts)
        lo = 0
        while lo < len(counts):
            hi = max(int(np.searchsorted(cum, cum[lo] - counts[lo] + chunk, "right")), lo + 1)
            c = counts[lo:hi]
            total = int(c.sum())
            offset = np.repeat(np.cumsum(c) - c, c)
            k = np.arange(total) - offset + np.repeat(first[lo:hi], c)
            polls = np.bincount(
                self._bin(np.repeat(pop.start[lo:hi], c) + k * poll_s), minlength=len(self.bytes)
            )
            self.requests += polls
            self.bytes += polls * size
            lo = hi
        return int(counts.sum())

    def add_downloads(self, starts: np.ndarray, delivery: Delivery) -> None:
        """Package bytes at ``download_rate`` over ``[start, start + download_s)``."""
        duration = delivery.download_s
        edges = np.arange(len(self.bytes) + 1) * self.step
        s = np.sort(starts)
        prefix = np.concatenate([[0.0], np.cumsum(s)])

        def busy(t: np.ndarray) -> np.ndarray:
            # sum over downloads of clip(t - start, 0, duration): slot-seconds used by time t
            done = np.searchsorted(s, t - duration, side="right")
            begun = np.searchsorted(s, t, side="right")
            running = (begun - done) * t - (prefix[begun] - prefix[done])
            return done * duration + running

        self.bytes += np.diff(busy(edges)) * delivery.download_rate
