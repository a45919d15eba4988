"""The system accounts servers run as, and files and directories owned by them.

PostgreSQL refuses to run as root and Mosquitto would drop privileges by itself, so when we are root each
server runs as its Debian package's system user (`postgres`, `mosquitto`); otherwise it runs as ourselves.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import ServiceUserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceUser:
    """A system account a child server process switches to."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        """`subprocess.Popen` arguments that switch to this account with no supplementary groups."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def service_user(name: str, package: str) -> ServiceUser | None:
    """The account to run a server as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise ServiceUserError(
            f"running as root, but the system user {name!r} does not exist: install the Debian package {package!r}"
        ) from exc
    return ServiceUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def chown(path: Path, owner: ServiceUser | None) -> None:
    """Give `path` to `owner` (no-op when running as ourselves)."""
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


def make_dir(path: Path, *, mode: int, owner: ServiceUser | None = None) -> None:
    """Create `path` (and missing parents, owned by us) and set its mode and owner."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    chown(path, owner)


def write_file(path: Path, data: str | bytes, *, mode: int = 0o600, owner: ServiceUser | None = None) -> None:
    """Atomically replace `path` with `data`, created with `mode` and `owner` before it becomes visible."""
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None:
                os.fchown(handle.fileno(), owner.uid, owner.gid)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_traversable(path: Path, user: ServiceUser | None) -> list[Path]:
    """Let `user` reach `path`: add o+x (search, not read) to ancestors it cannot enter; return those changed.

    Needed because e.g. pytest's and mkdtemp's directories are 0700 root-owned.
    """
    if user is None:
        return []
    groups = set(os.getgrouplist(user.name, user.gid))
    changed: list[Path] = []
    for ancestor in reversed(path.resolve().parents):
        st = ancestor.stat()
        if _can_search(st, user.uid, groups):
            continue
        ancestor.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        changed.append(ancestor)
        log.info("deploy.dir_made_traversable path=%s for_user=%s", ancestor, user.name)
    return changed


def _can_search(st: os.stat_result, uid: int, groups: set[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)
