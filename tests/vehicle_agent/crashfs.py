"""Power cuts that lose the page cache: record the file-system operations made under a
directory, then build every crash state that keeps only what was made durable.

``Recorder`` wraps the Python-level calls every writer here goes through (``open``,
``os.open``, ``os.replace``/``rename``, ``os.unlink``, ``os.mkdir``/``rmdir``,
``os.symlink``, ``os.fsync``), in this process, for paths under one root. An ``fsync`` of a file
snapshots its bytes (what is durable from then on); an ``fsync`` of a directory makes
its entries durable. ``crash_states()`` then models a power cut after each operation:

* file data: what the inode held at its last fsync; never fsynced: nothing (empty);
  a file that existed before recording keeps its old bytes unless a truncate of it
  reached the disk;
* names (create, rename, unlink, mkdir, symlink: its target is part of its creation)
  and truncates not yet made durable (by a
  fsync of their directory, resp. of the file) reached the disk or not: metadata is
  journalled in the order made, so any prefix of them may have, and every prefix is
  a state.

States are deduplicated by their content. (kill -9 cannot find any of this: the page
cache survives it.)
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

Op = tuple  # ("link", dir, name, ino, is_dir[, symlink target]) | ("rename", sdir, sname, ddir, dname, ino) |
# ("unlink", dir, name) | ("truncate", ino) | ("fsync", ino, bytes) | ("dirsync", dir) | ("open_w", path)


@dataclass(frozen=True)
class Symlink:
    target: str


Content = bytes | Symlink | None  # a file's bytes, a symbolic link, a directory


@dataclass
class Baseline:
    names: dict[str, dict[str, int]] = field(default_factory=dict)  # dir -> name -> inode
    data: dict[int, bytes | Symlink] = field(default_factory=dict)
    dirs: set[int] = field(default_factory=set)


def snapshot(root: Path) -> Baseline:
    b = Baseline()
    for d, subdirs, files in os.walk(root):
        b.names[d] = {}
        for n in subdirs + files:
            st = os.lstat(os.path.join(d, n))
            b.names[d][n] = st.st_ino
            if stat.S_ISDIR(st.st_mode):
                b.dirs.add(st.st_ino)
            elif stat.S_ISLNK(st.st_mode):
                b.data[st.st_ino] = Symlink(os.readlink(os.path.join(d, n)))
            else:
                with open(os.path.join(d, n), "rb") as f:
                    b.data[st.st_ino] = f.read()
    return b


class Recorder:
    """Records file-system operations under ``root`` made by this process while active."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.ops: list[Op] = []
        self.baseline = Baseline()
        self._lock = threading.Lock()
        self._saved: dict[tuple[object, str], object] = {}

    def _mine(self, path: object) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            p = os.fspath(path)
        except TypeError:
            return None
        if isinstance(p, bytes):
            return None
        # The directory resolved, not the name: an unlink or rename of a symlink is of the link.
        p = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(p))), os.path.basename(p))
        return p if p == self.root or p.startswith(self.root + os.sep) else None

    def _add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def __enter__(self) -> Recorder:
        self.baseline = snapshot(Path(self.root))
        real = {
            name: getattr(os, name)
            for name in (
                "open",
                "replace",
                "rename",
                "unlink",
                "remove",
                "mkdir",
                "rmdir",
                "symlink",
                "fsync",
            )
        }
        real_open = io.open
        rec = self

        def created(path: str, existed: bool, ino: int, is_dir: bool = False) -> None:
            if not existed:
                rec._add(("link", os.path.dirname(path), os.path.basename(path), ino, is_dir))

        def open_(file, mode="r", *a, **kw):
            path = rec._mine(file)
            existed = path is not None and os.path.exists(path)
            f = real_open(file, mode, *a, **kw)
            if path is not None and any(c in mode for c in "wax+"):
                created(path, existed, os.fstat(f.fileno()).st_ino)
                if existed:
                    rec._add(("open_w", path))
                    if "w" in mode:
                        rec._add(("truncate", os.fstat(f.fileno()).st_ino))
            return f

        def os_open(path, flags, mode=0o777, *, dir_fd=None):
            mine = rec._mine(path) if dir_fd is None else None
            existed = mine is not None and os.path.exists(mine)
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            if mine is not None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                st = os.fstat(fd)
                created(mine, existed, st.st_ino)
                if existed and not stat.S_ISDIR(st.st_mode):
                    rec._add(("open_w", mine))
                    if flags & os.O_TRUNC:
                        rec._add(("truncate", st.st_ino))
            return fd

        def rename_(which):
            def f(src, dst, *a, **kw):
                s, d = rec._mine(src), rec._mine(dst)
                ino = os.lstat(src).st_ino if s else 0
                real[which](src, dst, *a, **kw)
                if s and d:
                    rec._add(
                        (
                            "rename",
                            os.path.dirname(s),
                            os.path.basename(s),
                            os.path.dirname(d),
                            os.path.basename(d),
                            ino,
                        )
                    )

            return f

        def unlink_(which):
            def f(path, *a, **kw):
                p = rec._mine(path) if not kw.get("dir_fd") else None
                real[which](path, *a, **kw)
                if p:
                    rec._add(("unlink", os.path.dirname(p), os.path.basename(p)))

            return f

        def mkdir_(path, mode=0o777, *a, **kw):
            p = rec._mine(path)
            real["mkdir"](path, mode, *a, **kw)
            if p:
                rec._add(
                    ("link", os.path.dirname(p), os.path.basename(p), os.lstat(p).st_ino, True)
                )

        def symlink_(src, dst, *a, **kw):
            p = rec._mine(dst)
            real["symlink"](src, dst, *a, **kw)
            if p:
                ino = os.lstat(p).st_ino
                rec._add(("link", os.path.dirname(p), os.path.basename(p), ino, False, src))

        def fsync_(fd):
            real["fsync"](fd)
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return
            if rec._mine(path.removesuffix(" (deleted)")) is None:
                return
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                rec._add(("dirsync", path))
            else:
                with real_open(f"/proc/self/fd/{fd}", "rb") as f:
                    rec._add(("fsync", st.st_ino, f.read()))

        patches = {
            (builtins, "open"): open_,
            (io, "open"): open_,
            (os, "open"): os_open,
            (os, "replace"): rename_("replace"),
            (os, "rename"): rename_("rename"),
            (os, "unlink"): unlink_("unlink"),
            (os, "remove"): unlink_("remove"),
            (os, "mkdir"): mkdir_,
            (os, "rmdir"): unlink_("rmdir"),
            (os, "symlink"): symlink_,
            (os, "fsync"): fsync_,
        }
        for (mod, name), fn in patches.items():
            self._saved[(mod, name)] = getattr(mod, name)
            setattr(mod, name, fn)
        return self

    def __exit__(self, *exc: object) -> None:
        for (mod, name), fn in self._saved.items():
            setattr(mod, name, fn)
        self._saved.clear()

    # -- crash states --------------------------------------------------------------------
    def crash_states(self) -> Iterator[tuple[int, int, dict[str, Content]]]:
        """(crash point, metadata prefix, tree) for every distinct state; a tree maps each
        path relative to the root to its bytes (None: a directory; a Symlink)."""
        seen: set[str] = set()
        at = _durable_at(self.ops)
        for k in range(len(self.ops) + 1):
            done = self.ops[:k]
            pending = [j for j, op in enumerate(done) if _is_meta(op) and at[j] >= k]
            for p in range(len(pending) + 1):
                tree = self._tree(done, set(pending[:p]), at, k)
                key = hashlib.sha256(
                    repr(
                        sorted(
                            (n, hashlib.sha256(b).hexdigest() if isinstance(b, bytes) else repr(b))
                            for n, b in tree.items()
                        )
                    ).encode()
                ).hexdigest()
                if key not in seen:
                    seen.add(key)
                    yield k, p, tree

    def _tree(
        self, done: list[Op], applied: set[int], at: list[float], k: int
    ) -> dict[str, Content]:
        names = {d: dict(n) for d, n in self.baseline.names.items()}
        dirs = set(self.baseline.dirs)
        truncated: set[int] = set()
        data: dict[int, bytes | Symlink] = dict(self.baseline.data)
        for j, op in enumerate(done):
            kind = op[0]
            if kind == "fsync":
                data[op[1]] = op[2]
                truncated.discard(op[1])
                continue
            if not _is_meta(op) or not (j in applied or at[j] < k):
                continue
            if kind == "link":
                names.setdefault(op[1], {})[op[2]] = op[3]
                if len(op) > 5:
                    data[op[3]] = Symlink(op[5])
                if op[4]:
                    dirs.add(op[3])
                    names.setdefault(os.path.join(op[1], op[2]), {})
            elif kind == "rename":
                names.setdefault(op[1], {}).pop(op[2], None)
                names.setdefault(op[3], {})[op[4]] = op[5]
            elif kind == "unlink":
                names.setdefault(op[1], {}).pop(op[2], None)
            elif kind == "truncate":
                truncated.add(op[1])
        out: dict[str, Content] = {}

        def walk(d: str, rel: str) -> None:
            for n, ino in sorted(names.get(d, {}).items()):
                r = os.path.join(rel, n) if rel else n
                if ino in dirs:
                    out[r] = None
                    walk(os.path.join(d, n), r)
                else:
                    out[r] = b"" if ino in truncated else data.get(ino, b"")

        walk(self.root, "")
        return out


def _is_meta(op: Op) -> bool:
    return op[0] in ("link", "rename", "unlink", "truncate")


def _dirs_of(op: Op) -> tuple[str, ...]:
    return (op[1], op[3]) if op[0] == "rename" else (op[1],)


def _durable_at(ops: list[Op]) -> list[float]:
    """For each metadata op, the index of the fsync that makes it durable (inf: none does)."""
    out: list[float] = []
    for j, op in enumerate(ops):
        when = float("inf")
        if _is_meta(op):
            need = set(_dirs_of(op)) if op[0] != "truncate" else set()
            for i in range(j + 1, len(ops)):
                o = ops[i]
                if op[0] == "truncate" and o[0] == "fsync" and o[1] == op[1]:
                    when = i
                    break
                if o[0] == "dirsync":
                    need.discard(o[1])
                    if op[0] != "truncate" and not need:
                        when = i
                        break
        out.append(when)
    return out


def materialize(tree: dict[str, Content], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for rel, content in sorted(tree.items()):
        p = dest / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, Symlink):
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(content.target, p)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
