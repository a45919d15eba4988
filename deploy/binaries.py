"""Locating the PostgreSQL and Mosquitto binaries, with errors that say which Debian package to install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from deploy.errors import BinaryNotFoundError

# Debian installs server binaries outside a normal user's PATH (mosquitto in /usr/sbin, initdb in a
# versioned directory), so these are searched as well.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


def find_postgres_bin() -> Path | None:
    """The PostgreSQL server bin directory: `pg_config --bindir` if on PATH, else the newest Debian one."""
    from_pg_config = _pg_config_value("pg_config", "--bindir")
    if from_pg_config is not None and (from_pg_config / "initdb").exists():
        return from_pg_config
    candidates = [p for p in _DEBIAN_PG_ROOT.glob("*/bin") if (p / "initdb").exists()]
    candidates.sort(key=lambda p: _version_key(p.parent.name))
    return candidates[-1] if candidates else None


def require_postgres_bin() -> Path:
    """Like `find_postgres_bin`, but a missing server is a `BinaryNotFoundError`."""
    bin_dir = find_postgres_bin()
    if bin_dir is None or not (bin_dir / "postgres").exists():
        raise BinaryNotFoundError("PostgreSQL server (initdb, postgres)", "postgresql")
    return bin_dir


def postgres_pkglibdir(bin_dir: Path) -> Path:
    """Where server extension libraries live (`$libdir`), used to see whether TimescaleDB is installed."""
    value = _pg_config_value(str(bin_dir / "pg_config"), "--pkglibdir")
    return value if value is not None else bin_dir.parent / "lib"


def require_binary(name: str, package: str) -> Path:
    """The absolute path of `name` (PATH, then the sbin directories), else a `BinaryNotFoundError`."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_DIRS])
    found = shutil.which(name, path=search)
    if found is None:
        raise BinaryNotFoundError(name, package)
    return Path(found)


def _pg_config_value(pg_config: str, flag: str) -> Path | None:
    exe = shutil.which(pg_config)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, flag], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return Path(value) if value else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)
