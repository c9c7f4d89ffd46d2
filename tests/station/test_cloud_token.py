"""The access token: from the named environment variable or a 0600 file, never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from station.cloud.config import CloudConfig
from station.cloud.errors import CloudConfigError
from station.cloud.token import AccessToken, load_token, token_from_env, token_from_file

SECRET = "0123456789abcdef0123456789abcdef01234567"


def test_from_named_env_var() -> None:
    token = load_token(CloudConfig(product="1", token_env="ACME"), {"ACME": f" {SECRET}\n"})
    assert token.reveal() == SECRET
    assert SECRET not in repr(token) and SECRET not in str(token) and SECRET not in f"{token!r} {token}"
    assert "ACME" in str(token)


def test_missing_env_var_names_it_and_the_fix() -> None:
    with pytest.raises(CloudConfigError) as info:
        token_from_env("PARTICLE_ACCESS_TOKEN", {})
    assert "PARTICLE_ACCESS_TOKEN" in str(info.value)
    assert "--token-file" in str(info.value)


def test_from_private_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    token = load_token(CloudConfig(product="1", token_file=path), {})
    assert token.reveal() == SECRET
    assert str(path) in str(token)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_readable_by_others_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    path.chmod(mode)
    with pytest.raises(CloudConfigError) as info:
        token_from_file(path)
    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert SECRET not in message


def test_missing_file_and_fifo(tmp_path: Path) -> None:
    with pytest.raises(CloudConfigError, match="not found"):
        token_from_file(tmp_path / "nope")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(CloudConfigError, match="not a regular file"):
        token_from_file(fifo)


@pytest.mark.parametrize("content", ["", "   \n", "two words", "x" * 2000, "caf\u00e9"])
def test_unusable_contents(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(CloudConfigError):
        token_from_file(path)


def test_header_injection_refused() -> None:
    with pytest.raises(CloudConfigError):
        AccessToken("abc\r\nX-Evil: 1", source="test")
