"""CloudConfig: defaults, the [cloud] table loader naming bad keys, HTTPS-only base URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.cloud.config import CloudConfig, Timeouts, check_base_url
from station.cloud.errors import CloudConfigError


def test_defaults() -> None:
    config = CloudConfig.from_mapping({"product": 1234})
    assert config.product == "1234"
    assert config.base_url == "https://api.particle.io"
    assert config.token_env == "PARTICLE_ACCESS_TOKEN"
    assert config.token_file is None
    assert config.batch_size == 500
    assert config.import_sims is False
    assert config.rate_limit <= 10_000 and config.rate_window == 300


def test_full_table(tmp_path: Path) -> None:
    config = CloudConfig.from_mapping(
        {
            "product": "acme-v3",
            "base_url": "https://api.example.com/",
            "token_env": "ACME_TOKEN",
            "token_file": "secrets/token",
            "batch_size": 250,
            "import_sims": True,
            "timeouts": {"connect": 3, "read": 20},
            "rate_limit": 5000,
            "rate_window": 60,
        },
        base_dir=tmp_path,
    )
    assert config.base_url == "https://api.example.com"
    assert config.token_file == tmp_path / "secrets/token"
    assert config.timeouts == Timeouts(connect=3, read=20, write=60.0, pool=10.0, total=300.0)
    assert (config.batch_size, config.import_sims, config.rate_limit) == (250, True, 5000)


def test_single_number_timeout() -> None:
    config = CloudConfig.from_mapping({"product": "1", "timeouts": 7})
    assert config.timeouts == Timeouts(7, 7, 7, 7, 35)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"product": 1, "batchsize": 5}, "batchsize"),
        ({}, "product"),
        ({"product": 0}, "product"),
        ({"product": "a/b"}, "product"),
        ({"product": True}, "product"),
        ({"product": 1, "batch_size": 0}, "batch_size"),
        ({"product": 1, "batch_size": "10"}, "batch_size"),
        ({"product": 1, "batch_size": True}, "batch_size"),
        ({"product": 1, "import_sims": "yes"}, "import_sims"),
        ({"product": 1, "token_env": "NOT A NAME"}, "token_env"),
        ({"product": 1, "token_file": 5}, "token_file"),
        ({"product": 1, "timeouts": {"connect": -1}}, "timeouts.connect"),
        ({"product": 1, "timeouts": {"conect": 1}}, "conect"),
        ({"product": 1, "timeouts": "fast"}, "timeouts"),
        ({"product": 1, "rate_limit": 20_000}, "rate_limit"),
        ({"product": 1, "rate_window": 0}, "rate_window"),
        ({"product": 1, "base_url": "http://api.particle.io"}, "base_url"),
        ({"product": 1, "base_url": "ftp://x"}, "base_url"),
        ({"product": 1, "base_url": "https://u:p@host"}, "base_url"),
    ],
)
def test_bad_tables_name_the_key(table: dict[str, object], named: str) -> None:
    with pytest.raises(CloudConfigError) as info:
        CloudConfig.from_mapping(table, where="line1.toml [cloud]")
    assert named in str(info.value)
    assert "line1.toml [cloud]" in str(info.value)
    assert str(info.value).count("line1.toml") == 1  # the place is named once
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.1.2.3", "https://x.io"]
)
def test_plain_http_only_on_loopback(url: str) -> None:
    assert check_base_url(url) == url


@pytest.mark.parametrize("url", ["http://10.0.0.1", "http://example.com", "http://localhost.evil.com", "x"])
def test_plain_http_elsewhere_refused(url: str) -> None:
    with pytest.raises(CloudConfigError):
        check_base_url(url)


def test_overrides_are_validated() -> None:
    config = CloudConfig(product="12")
    assert config.with_overrides(batch_size=None, product="13").product == "13"
    with pytest.raises(CloudConfigError, match="batch_size"):
        config.with_overrides(batch_size=0)
