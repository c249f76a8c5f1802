"""An arm64 Debian root on this x86 host, run under qemu-user: the agent as a car's image holds it.

``ensure_root`` makes ``build/embedded-arm64/root`` once with ``debootstrap --arch=arm64
--variant=minbase`` (plus python3, python3-venv, ca-certificates) and reuses it after; a
half-made root (``root.tmp``) is never reused. ``ensure_venv`` puts the agent's lean install
of this checkout in it (``/opt/ota-agent``): a wheel built here, its dependencies the
manylinux aarch64 wheels from PyPI, downloaded on the host into a wheelhouse in the root and
installed from it offline by the root's own (aarch64) pip. ``chrooted`` runs a command in the
root, in a private mount namespace of its own holding ``/proc`` and ``/dev``, so the mounts
go when the command ends, however it ends. ``/sys`` is left out: with it mounted, creating
an onnxruntime session segfaults under qemu-user (SIGSEGV, checked once by hand); without it,
ORT's cpuinfo logs that it cannot read ``/sys/devices/system/cpu`` and carries on.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "embedded-arm64"
ROOT = BUILD / "root"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
MIRROR = os.environ.get("OTA_DEBIAN_MIRROR", "http://deb.debian.org/debian")
VENV = "/opt/ota-agent"  # inside the root
WHEELHOUSE = "/var/cache/ota-wheels"  # inside the root
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def why_not() -> str:
    """Empty when an arm64 root can be built and run here, else what is missing."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mounts)"
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: debootstrap, util-linux, coreutils)"
    if not BINFMT.exists() or "enabled" not in BINFMT.read_text():
        return (
            f"needs qemu-aarch64 registered with binfmt_misc ({BINFMT}: Debian's qemu-user-static "
            "and binfmt-support; `make embedded-arm64` installs and enables them)"
        )
    return ""


def _timed_json(name: str) -> dict:
    path = BUILD / name
    return json.loads(path.read_text()) if path.exists() else {}


def ensure_root() -> dict:
    """The arm64 root, made once; returns what its making measured (``debootstrap_s``)."""
    if not (ROOT / "usr" / "bin" / "python3").exists():
        tmp = BUILD / "root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        BUILD.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        subprocess.run(
            [
                "debootstrap",
                "--arch=arm64",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(tmp),
                MIRROR,
            ],
            check=True,
        )
        made = {"debootstrap_s": round(time.monotonic() - t, 1), "made": time.ctime()}
        shutil.rmtree(ROOT, ignore_errors=True)
        tmp.rename(ROOT)
        (BUILD / "debootstrap.json").write_text(json.dumps(made))
    return _timed_json("debootstrap.json")


def chrooted(cmd: list[str], root: Path = ROOT) -> list[str]:
    """``cmd`` run inside ``root`` (its paths are the root's) with /proc and /dev, without /sys."""
    r = shlex.quote(str(root))
    inner = (
        f"mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && "
        f"exec chroot {r} /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root "
        f"LANG=C.UTF-8 PYTHONUNBUFFERED=1 {shlex.join(cmd)}"
    )
    # No --fork: the command keeps this process's id (its VmHWM is readable from here).
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", inner]


def run_in(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(chrooted(cmd), check=True, text=True, capture_output=True, **kw)


def facts() -> dict:
    """The root's Python, glibc and machine, as its own interpreter reports them."""
    code = (
        "import json, os, platform; print(json.dumps({'python': platform.python_version(), "
        "'glibc': os.confstr('CS_GNU_LIBC_VERSION').split()[1], 'machine': platform.machine()}))"
    )
    return json.loads(run_in(["/usr/bin/python3", "-c", code]).stdout)


def build_wheel() -> Path:
    """This checkout as a wheel (pure Python), built on the host."""
    dist = BUILD / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    return next(dist.glob("squeeze_ota-*.whl"))


def download_wheels(wheel: Path, py: str, libc: str) -> Path:
    """The agent's dependencies as PyPI's manylinux aarch64 wheels for the root's Python and
    glibc (binary only: nothing is compiled), into the root's wheelhouse; returns it."""
    house = ROOT / WHEELHOUSE.lstrip("/")
    house.mkdir(parents=True, exist_ok=True)
    for old in house.glob("squeeze_ota-*.whl"):
        old.unlink()
    shutil.copy2(wheel, house)
    major, minor = py.split(".")[:2]
    platforms = ["manylinux2014_aarch64"] + [
        f"manylinux_2_{m}_aarch64" for m in range(17, int(libc.split(".")[1]) + 1)
    ]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(house)]
        + [f"--platform={p}" for p in platforms]
        + [f"--python-version={major}.{minor}", "--implementation=cp", f"--abi=cp{major}{minor}"]
        + [f"{house / wheel.name}[agent]"],
        check=True,
        capture_output=True,
    )
    return house


def ensure_venv(wheel: Path) -> None:
    """The lean install in the root's venv: dependencies kept between runs, this checkout's
    wheel reinstalled every run."""
    house, whl = WHEELHOUSE, f"{WHEELHOUSE}/{wheel.name}"
    pip = [f"{VENV}/bin/python", "-m", "pip", "-q", "--disable-pip-version-check"]
    if not (ROOT / VENV.lstrip("/") / "bin" / "python").exists():
        run_in(["/usr/bin/python3", "-m", "venv", VENV])
    run_in(pip + ["install", "--no-index", f"--find-links={house}", f"{whl}[agent]"])
    run_in(pip + ["install", "--no-index", "--no-deps", "--force-reinstall", whl])


def venv_figures() -> dict:
    """Size on disk and distributions of the root's venv."""
    venv = ROOT / VENV.lstrip("/")
    return {
        "venv_bytes": disk_usage(venv),
        "venv_dists": sorted(
            p.name.split("-")[0] for p in venv.glob("lib/python3*/site-packages/*.dist-info")
        ),
    }


def disk_usage(path: Path) -> int:
    """Bytes of disk used under ``path`` (``du``: allocated blocks)."""
    out = subprocess.run(["du", "-s", "-B1", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])
