"""What the station needs to reach the product in the cloud: a frozen ``CloudConfig`` built from the
profile's ``[cloud]`` section (``CloudConfig.from_mapping``) or from command-line options."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from station.cloud.errors import CloudConfigError
from station.cloud.groups import DEFAULT_GROUP_TEMPLATE, GroupNameError, check_group_template

DEFAULT_BASE_URL = "https://api.particle.io"
DEFAULT_TOKEN_ENV = "PARTICLE_ACCESS_TOKEN"
# "Chunk, e.g. a few hundred per request" (no documented maximum): big enough to keep the request
# count far under the rate limit, small enough that one refused batch does not hold back thousands.
DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000
# The documented limit is 10,000 requests per 5 minutes per source IP; other tools on the factory's
# public IP share it, so the station keeps some headroom by default.
DEFAULT_RATE_LIMIT = 9_000
DOCUMENTED_RATE_LIMIT = 10_000
DEFAULT_RATE_WINDOW = 300.0

_PRODUCT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _fail(where: str, key: str, what: str) -> CloudConfigError:
    return CloudConfigError(f"{where} {key}: {what}", hint="fix the profile's [cloud] section or the option")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, where: str = "[cloud]") -> str:
    """The base URL without a trailing slash; HTTPS required, plain HTTP only on loopback."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise _fail(where, "base_url", f"not a URL: {url!r} ({exc})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise _fail(where, "base_url", f"must be an https:// URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise _fail(where, "base_url", f"plain http is allowed only on loopback (127.0.0.1, ::1), got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise _fail(where, "base_url", f"must not carry a query, fragment or credentials: {url!r}")
    return url.rstrip("/")


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each phase of a request, and for the whole of it (``total``: an answer trickled
    slowly enough to beat the read timeout on every chunk still ends)."""

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 10.0
    total: float = 300.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _fail("[cloud]", f"timeouts.{f.name}", f"must be a number of seconds, got {value!r}")
            if not (math.isfinite(value) and 0 < value <= 3600):
                raise _fail("[cloud]", f"timeouts.{f.name}", f"must be > 0 and <= 3600 s, got {value!r}")

    @classmethod
    def from_value(cls, value: object, *, where: str = "[cloud]") -> Timeouts:
        """A number (every phase; the total is five times it) or a table with any of ``connect``,
        ``read``, ``write``, ``pool``, ``total``."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            v = float(value)
            return cls(connect=v, read=v, write=v, pool=v, total=min(5 * v, 3600.0))
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(str(k) for k in value if k not in known)
            if unknown:
                raise _fail(
                    where,
                    "timeouts",
                    f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                )
            return cls(**{str(k): v for k, v in value.items()})
        raise _fail(where, "timeouts", f"must be seconds or a table of connect/read/write/pool/total, got {value!r}")


@dataclass(frozen=True)
class CloudConfig:
    """Where and how to import devices: the product, the API, the token's source, batching and limits."""

    product: str  # numeric product ID or product slug, as the console shows it
    base_url: str = DEFAULT_BASE_URL
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: Path | None = None  # when set, the token is read from this 0600 file instead
    batch_size: int = DEFAULT_BATCH_SIZE
    import_sims: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    rate_limit: int = DEFAULT_RATE_LIMIT  # requests allowed per rate_window, client side
    rate_window: float = DEFAULT_RATE_WINDOW
    # The device group each run's devices go into ({date} = YYYYMMDD, {station} = the station ID);
    # None: no group.
    group: str | None = DEFAULT_GROUP_TEMPLATE
    # A file of DEVICE_ID,NAME lines: the sync names each device (e.g. after its serial number).
    device_names: Path | None = None

    def __post_init__(self) -> None:
        where = "[cloud]"
        if not isinstance(self.product, str) or not _PRODUCT.fullmatch(self.product):
            raise _fail(
                where,
                "product",
                f"must be a product ID or slug (letters, digits, - and _), got {self.product!r}",
            )
        object.__setattr__(self, "base_url", check_base_url(self.base_url, where=where))
        if not isinstance(self.token_env, str) or not _ENV_NAME.fullmatch(self.token_env):
            raise _fail(where, "token_env", f"must be an environment variable name, got {self.token_env!r}")
        if self.token_file is not None and not isinstance(self.token_file, Path):
            raise _fail(where, "token_file", f"must be a path, got {self.token_file!r}")
        _check_int(where, "batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        if not isinstance(self.import_sims, bool):
            raise _fail(where, "import_sims", f"must be true or false, got {self.import_sims!r}")
        if not isinstance(self.timeouts, Timeouts):
            raise _fail(where, "timeouts", f"must be a Timeouts, got {self.timeouts!r}")
        _check_int(where, "rate_limit", self.rate_limit, 1, DOCUMENTED_RATE_LIMIT)
        if (
            not isinstance(self.rate_window, int | float)
            or isinstance(self.rate_window, bool)
            or not (math.isfinite(self.rate_window) and 0 < self.rate_window <= 86_400)
        ):
            raise _fail(where, "rate_window", f"must be seconds in (0, 86400], got {self.rate_window!r}")
        if self.group is not None:
            object.__setattr__(self, "group", check_group_template(self.group, where=f"{where} group"))
        if self.device_names is not None and not isinstance(self.device_names, Path):
            raise _fail(where, "device_names", f"must be a path, got {self.device_names!r}")

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], *, where: str = "[cloud]", base_dir: Path | None = None
    ) -> CloudConfig:
        """Build from a parsed TOML table; unknown or ill-typed keys are errors that name the key.

        A relative ``token_file`` is taken relative to ``base_dir`` (the profile's folder).
        """
        if not isinstance(data, Mapping):
            raise CloudConfigError(f"{where}: must be a table, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise CloudConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "product" not in data:
            raise _fail(where, "product", "is required (the product ID or slug to import devices into)")
        product = data["product"]
        if isinstance(product, int) and not isinstance(product, bool):
            if product <= 0:
                raise _fail(where, "product", f"must be a positive product ID, got {product}")
            product = str(product)
        if not isinstance(product, str):
            raise _fail(where, "product", f"must be a product ID or slug, got {product!r}")
        kwargs: dict[str, object] = {"product": product}
        for key in ("base_url", "token_env"):
            if key in data:
                value = data[key]
                if not isinstance(value, str):
                    raise _fail(where, key, f"must be a string, got {value!r}")
                kwargs[key] = value
        if "token_file" in data:
            raw = data["token_file"]
            if not isinstance(raw, str) or not raw:
                raise _fail(where, "token_file", f"must be a path string, got {raw!r}")
            path = Path(raw).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            kwargs["token_file"] = path
        for key in ("batch_size", "import_sims", "rate_limit", "rate_window"):
            if key in data:
                kwargs[key] = data[key]
        if "group" in data:
            group = data["group"]
            if group is False:
                kwargs["group"] = None
            elif isinstance(group, str):
                kwargs["group"] = group
            else:
                raise _fail(
                    where,
                    "group",
                    f"must be a group name, a template with {{date}}/{{station}}, or false, got {group!r}",
                )
        if "device_names" in data:
            raw_names = data["device_names"]
            if not isinstance(raw_names, str) or not raw_names:
                raise _fail(where, "device_names", f"must be the path of a DEVICE_ID,NAME file, got {raw_names!r}")
            names_path = Path(raw_names).expanduser()
            if not names_path.is_absolute() and base_dir is not None:
                names_path = base_dir / names_path
            kwargs["device_names"] = names_path
        try:
            if "timeouts" in data:
                # Named "[cloud]" here like every other check; the except below puts the profile in.
                kwargs["timeouts"] = Timeouts.from_value(data["timeouts"])
            return cls(**kwargs)  # type: ignore[arg-type]
        except (CloudConfigError, GroupNameError) as exc:
            if where != "[cloud]":
                raise CloudConfigError(exc.message.replace("[cloud]", where, 1), hint=exc.hint) from None
            raise

    def with_overrides(self, **changes: object) -> CloudConfig:
        """A copy with the given fields replaced (None values are ignored), validated again."""
        given = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **given)  # type: ignore[arg-type]


def _check_int(where: str, key: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(where, key, f"must be an integer from {low} to {high}, got {value!r}")
