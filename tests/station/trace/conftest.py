"""Shared set-up for the traceability tests: a line profile over simulated boards, operators with PINs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from station.cli import main
from station.demo.sample_release import make_sample_release


def station(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def release(tmp_path: Path, version: int, *, security_version: int | None = None, product_id: int = 1234) -> Path:
    """A signed argon bundle of ``version`` in its own folder (its own key); returns the bundle."""
    folder = tmp_path / f"v{version}-{security_version}"
    return make_sample_release(
        folder, target="argon", product_id=product_id, product_version=version, security_version=security_version
    ).bundle


def profile(tmp_path: Path, bundle: Path, *, extra: str = "", name: str = "line.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'station_id = "line-1"\nbundle = "{bundle}"\ntrusted_keys = ["{bundle.parent / "release.pub"}"]\n'
        f"job_timeout = 30\n{extra}"
    )
    return path


def add_operator(db: Path, name: str, role: str, pin: str, *, admin: tuple[str, str] | None = None) -> None:
    env = {"BENCHFLASH_NEW_PIN": pin}
    args = ["operators", "add", name, "--role", role, "--db", str(db), "--station", "line-1"]
    if admin is not None:
        args += ["--as", admin[0]]
        env["BENCHFLASH_PIN"] = admin[1]
    result = station(*args, env=env)
    assert result.exit_code == 0, result.output


def run_line(
    profile_path: Path, db: Path, operator: str, pin: str | None, *extra: str, simulate: str = "argon-dfu:1"
) -> Result:
    env = {"BENCHFLASH_PIN": pin} if pin is not None else {}
    args: Sequence[str] = (
        "run",
        "--profile",
        str(profile_path),
        "--db",
        str(db),
        "--operator",
        operator,
        "--json",
        "--no-timing",
        "--simulate",
        simulate,
        "--duration",
        "1",
        *extra,
    )
    return station(*args, env=env)


def events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def staffed(tmp_path: Path) -> Path:
    """A registry with an admin, a lead and an operator (PINs 9999, 2222, 1111)."""
    db = tmp_path / "station.db"
    add_operator(db, "root", "admin", "9999")
    add_operator(db, "lena", "lead", "2222", admin=("root", "9999"))
    add_operator(db, "otto", "operator", "1111", admin=("root", "9999"))
    return db
