"""Where the registry lives: ``--db``, else ``BENCHFLASH_DB``, else the platform's data folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

from station.store.errors import RegistryUnavailable

DB_ENV = "BENCHFLASH_DB"
APP_NAME = "benchflash"
DB_FILENAME = "station.db"
_FIX = f"pass --db PATH or set {DB_ENV} to a writable file"


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME)) / DB_FILENAME


def resolve_db_path(option: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path:
    """The registry file a command should use: the option, else the environment, else the default."""
    env = os.environ if environ is None else environ
    if option is not None and str(option) != "":
        return Path(option).expanduser()
    from_env = env.get(DB_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return default_db_path()


def ensure_parent(path: Path) -> None:
    """Create the folders above ``path``; a place that cannot hold the file is one clear error."""
    if path.is_dir():
        raise RegistryUnavailable(f"registry path {path} is a folder, not a file", hint=_FIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryUnavailable(
            f"cannot create the registry folder {path.parent}: {exc.strerror or exc}", hint=_FIX
        ) from exc


def unavailable(path: Path, why: str) -> RegistryUnavailable:
    return RegistryUnavailable(f"cannot open the registry {path}: {why}", hint=_FIX)
