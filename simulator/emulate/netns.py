"""Network namespaces with a veth pair each, shaped by ``tc tbf``.

Vehicle k gets namespace ``otasim<tag>-<k>`` and the private subnet
``10.231.<k+1>.0/24``: the host end of its veth is ``.1``, the vehicle's end
``.2``. Only those two addresses ever carry traffic: no forwarding, no default
route, nothing leaves the pair. The kernel shapes the download direction (host
to vehicle) with a token bucket filter; latency and drop-outs are the relay's
job (``netem`` is not in this kernel).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUBNET_PREFIX = "10.231"
MAX_VEHICLES = 250
LOCK_PATH = Path("/run/lock/otasim-emulation.lock")


class EmulationUnavailable(RuntimeError):
    """Namespaces or tc cannot be used here; the message says why."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if check and res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, args, res.stdout, res.stderr)
    return res


@dataclass(frozen=True)
class VehicleLink:
    index: int
    netns: str
    host_if: str
    ns_if: str
    rate_mbit: float

    @property
    def host_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index + 1}.1"

    @property
    def vehicle_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index + 1}.2"


def check_available() -> None:
    """Raise :class:`EmulationUnavailable` unless we can make a shaped namespace."""
    if os.geteuid() != 0:
        raise EmulationUnavailable("needs root to create network namespaces (run as root)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise EmulationUnavailable(f"'{tool}' is not installed (apt-get install iproute2)")
    probe = f"otasimprobe{os.getpid() % 100000}"
    try:
        _run("ip", "netns", "add", probe)
    except subprocess.CalledProcessError as e:
        raise EmulationUnavailable(
            f"cannot create a network namespace: {e.stderr.strip()}"
        ) from None
    try:
        veth = f"osp{os.getpid() % 100000}"
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "n", "netns", probe)
        try:
            _run(
                "tc",
                "qdisc",
                "add",
                "dev",
                veth,
                "root",
                "tbf",
                "rate",
                "8mbit",
                "burst",
                "32kb",
                "latency",
                "400ms",
            )
        except subprocess.CalledProcessError as e:
            raise EmulationUnavailable(f"tc tbf does not work here: {e.stderr.strip()}") from None
        finally:
            _run("ip", "link", "del", veth, check=False)
    except subprocess.CalledProcessError as e:
        raise EmulationUnavailable(
            f"cannot create a veth pair into a namespace: {e.stderr.strip()}"
        ) from None
    finally:
        _run("ip", "netns", "del", probe, check=False)


class Namespaces:
    """Creates the vehicles' namespaces and removes them all on exit, whatever happens."""

    def __init__(self, rates_mbit: list[float], lock_wait_s: float = 600.0) -> None:
        self.lock_wait_s = lock_wait_s
        if len(rates_mbit) > MAX_VEHICLES:
            raise ValueError(
                f"at most {MAX_VEHICLES} emulated vehicles, asked for {len(rates_mbit)}"
            )
        self.tag = f"{os.getpid() % 100000}"
        self.links = [
            VehicleLink(k, f"otasim{self.tag}-{k}", f"os{self.tag}h{k}", f"os{self.tag}n{k}", r)
            for k, r in enumerate(rates_mbit)
        ]
        self._lock_fd: int | None = None

    def __enter__(self) -> Namespaces:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(LOCK_PATH, os.O_CREAT | os.O_RDWR, 0o644)
        # One emulation at a time on a machine: their 10.231.x.0/24 subnets would clash.
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._lock_fd)
                    self._lock_fd = None
                    raise EmulationUnavailable(
                        f"another emulation held {LOCK_PATH} for {self.lock_wait_s:.0f} s "
                        f"(its {SUBNET_PREFIX}.x.0/24 subnets would clash)"
                    ) from None
                time.sleep(0.5)
        try:
            for link in self.links:
                self._make(link)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _make(self, link: VehicleLink) -> None:
        _run("ip", "netns", "add", link.netns)
        _run(
            "ip",
            "link",
            "add",
            link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            link.ns_if,
            "netns",
            link.netns,
        )
        _run("ip", "addr", "add", f"{link.host_ip}/24", "dev", link.host_if)
        _run("ip", "link", "set", link.host_if, "up")
        ns = ("ip", "netns", "exec", link.netns)
        _run(*ns, "ip", "addr", "add", f"{link.vehicle_ip}/24", "dev", link.ns_if)
        _run(*ns, "ip", "link", "set", link.ns_if, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        # Burst of at least one rate-tick's worth; latency bounds the queue (drops beyond it, as a modem would).
        burst_kb = max(16, int(link.rate_mbit * 1e6 / 8 / 250 / 1024) + 2)
        _run(
            "tc",
            "qdisc",
            "add",
            "dev",
            link.host_if,
            "root",
            "tbf",
            "rate",
            f"{link.rate_mbit}mbit",
            "burst",
            f"{burst_kb}kb",
            "latency",
            "300ms",
        )
        log.debug(
            "made %s: %s <-> %s at %s Mbit/s",
            link.netns,
            link.host_ip,
            link.vehicle_ip,
            link.rate_mbit,
        )

    def exec_prefix(self, link: VehicleLink) -> list[str]:
        return ["ip", "netns", "exec", link.netns]

    def __exit__(self, *exc: object) -> None:
        for link in self.links:
            _run("ip", "link", "del", link.host_if, check=False)
            _run("ip", "netns", "del", link.netns, check=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
