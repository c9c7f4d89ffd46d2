"""A Particle Cloud API client on httpx: one method per endpoint, typed answers, typed errors.

HTTPS only (plain HTTP on loopback, for the simulated console), certificates verified, a timeout
on every phase of every request, the token sent as a Bearer header and never anywhere else, and a
client-side limiter in front of every request. Retrying is the caller's decision (see sync.py).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from urllib.parse import quote, urlsplit

import httpx

from station.cloud.backoff import RateLimiter, parse_retry_after
from station.cloud.config import (
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_WINDOW,
    CloudConfig,
    Timeouts,
    check_base_url,
    is_loopback_host,
)
from station.cloud.errors import (
    CloudAuthError,
    CloudNotFound,
    CloudRateLimited,
    CloudRedirected,
    CloudRejected,
    CloudUnavailable,
)
from station.cloud.models import (
    DevicePage,
    ImportResult,
    ProductDevice,
    ProductFirmware,
    ProductGroup,
    ProductInfo,
)
from station.cloud.token import AccessToken

# Bigger than any legitimate answer (an import result naming 100,000 IDs is under 3 MB).
MAX_ANSWER_BYTES = 32 * 1024 * 1024
# Error descriptions are shown to people; keep them to one readable line.
_MAX_DESCRIPTION = 200
# Secrets shorter than this are redacted only as whole words (see ``redact``).
_WORD_ONLY_BELOW = 8
# The API's own limits: scopes named in 401/403 messages so the fix is obvious.
SCOPE_IMPORT = "devices:import"
SCOPE_LIST = "devices:list"
SCOPE_GET = "devices:get"
SCOPE_UPDATE = "devices:update"
SCOPE_PRODUCT = "products:get"
SCOPE_FIRMWARE_CREATE = "firmware:create"
SCOPE_FIRMWARE_LIST = "firmware:list"
SCOPE_FIRMWARE_GET = "firmware:get"
SCOPE_FIRMWARE_RELEASE = "firmware:release"
SCOPE_GROUPS_LIST = "groups:list"
SCOPE_GROUPS_CREATE = "groups:create"
# Product firmware binaries are small (a user part is at most a few MB); bound the upload anyway.
MAX_FIRMWARE_BYTES = 16 * 1024 * 1024
# Sent with a firmware upload, as Particle's own firmware-upload-action does.
FIRMWARE_API_VERSION = "1.2.0"
# How many pages `iter_devices` follows at most: a lying total_pages must not loop forever.
MAX_PAGES = 100_000


def _user_agent() -> str:
    try:
        return f"benchflash/{version('benchflash')}"
    except PackageNotFoundError:
        return "benchflash"


class ParticleCloud:
    """Talks to ``base_url`` (default https://api.particle.io) with ``token``.

    ``transport`` is for tests only (an httpx transport); ``limiter`` may be shared between clients
    of one station because the API's budget is per source IP.
    """

    def __init__(
        self,
        token: AccessToken,
        *,
        base_url: str = "https://api.particle.io",
        timeouts: Timeouts | None = None,
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.base_url = check_base_url(base_url, where="cloud client")
        self._token = token
        t = timeouts or Timeouts()
        self._total = t.total
        self.limiter = limiter or RateLimiter(DEFAULT_RATE_LIMIT, DEFAULT_RATE_WINDOW)
        self._max_answer = max_answer_bytes
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            verify=True,
            follow_redirects=False,
            # Factory networks often need HTTPS_PROXY and a site CA (SSL_CERT_FILE): honour the
            # environment, except on loopback (the simulated console), where a proxy only gets in the way.
            trust_env=not is_loopback_host(urlsplit(self.base_url).hostname or ""),
            transport=transport,
            headers={"User-Agent": _user_agent(), "Accept": "application/json"},
        )
        self._count_lock = threading.Lock()
        self.requests_sent = 0

    @classmethod
    def from_config(
        cls,
        config: CloudConfig,
        token: AccessToken,
        *,
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> ParticleCloud:
        return cls(
            token,
            base_url=config.base_url,
            timeouts=config.timeouts,
            limiter=limiter or RateLimiter(config.rate_limit, config.rate_window),
            transport=transport,
        )

    # -- endpoints -----------------------------------------------------------------------------

    def import_devices(self, product: str, device_ids: Sequence[str], *, import_sims: bool = False) -> ImportResult:
        """``POST /v1/products/:product/devices`` with a .txt file of IDs, one per line."""
        if not device_ids:
            raise ValueError("import_devices needs at least one device ID")
        if any(("\n" in d or "\r" in d) for d in device_ids):
            raise ValueError("a device ID must not contain a line break")
        content = ("\n".join(device_ids) + "\n").encode("ascii", errors="strict")
        data = {"import_sims": "true"} if import_sims else None
        body = self._request(
            "POST",
            f"/v1/products/{_seg(product)}/devices",
            scope=SCOPE_IMPORT,
            files={"file": ("devices.txt", content, "text/plain")},
            data=data,
        )
        return ImportResult.from_json(body)

    def list_devices(
        self,
        product: str,
        *,
        page: int = 1,
        per_page: int = 100,
        device_id: str | None = None,
        groups: Sequence[str] | None = None,
    ) -> DevicePage:
        """``GET /v1/products/:product/devices``: one page of the product's devices."""
        params: dict[str, str | int] = {"page": page, "per_page": per_page}
        if device_id:
            params["deviceId"] = device_id
        if groups:
            params["groups"] = ",".join(groups)
        body = self._request("GET", f"/v1/products/{_seg(product)}/devices", scope=SCOPE_LIST, params=params)
        return DevicePage.from_json(body, asked_page=page)

    def get_device(self, product: str, device_id: str) -> ProductDevice:
        """``GET /v1/products/:product/devices/:id``."""
        body = self._request("GET", f"/v1/products/{_seg(product)}/devices/{_seg(device_id)}", scope=SCOPE_GET)
        return ProductDevice.from_json(body)

    def iter_devices(
        self, product: str, *, per_page: int = 100, fetch: Callable[[int], DevicePage] | None = None
    ) -> Iterator[ProductDevice]:
        """Every device of the product, page by page from 1 until ``page >= meta.total_pages``.

        ``fetch(page)`` replaces the plain page call, e.g. with one that retries with backoff.
        """

        def plain(page: int) -> DevicePage:
            return self.list_devices(product, page=page, per_page=per_page)

        get = fetch or plain
        page = 1
        while page <= MAX_PAGES:
            answer = get(page)
            yield from answer.devices
            if page >= answer.total_pages or not answer.devices:
                return
            page += 1
        raise CloudUnavailable(f"product {product} device list claims more than {MAX_PAGES} pages")

    def get_product(self, product: str) -> ProductInfo:
        """``GET /v1/products/:product``: the numeric ID (and platform) behind an ID or slug."""
        body = self._request("GET", f"/v1/products/{_seg(product)}", scope=SCOPE_PRODUCT)
        return ProductInfo.from_json(body)

    def update_device(
        self,
        product: str,
        device_id: str,
        *,
        name: str | None = None,
        groups: Sequence[str] | None = None,
        desired_firmware_version: int | None = None,
        unlock: bool = False,
        flash: bool | None = None,
        notes: str | None = None,
    ) -> ProductDevice | None:
        """``PUT /v1/products/:product/devices/:id`` with only the fields given.

        ``desired_firmware_version`` locks the device to that product firmware, ``unlock=True``
        sends it as null; ``flash=True`` pushes the locked firmware now if the device is online;
        ``groups`` replaces the device's groups. Returns the device when the answer carries it.
        """
        body: dict[str, object] = {}
        if name is not None:
            body["name"] = name
        if notes is not None:
            body["notes"] = notes
        if groups is not None:
            body["groups"] = list(groups)
        if unlock and desired_firmware_version is not None:
            raise ValueError("lock or unlock, not both")
        if desired_firmware_version is not None:
            body["desired_firmware_version"] = desired_firmware_version
        elif unlock:
            body["desired_firmware_version"] = None
        if flash is not None:
            body["flash"] = flash
        if not body:
            raise ValueError("update_device needs at least one field to change")
        answer = self._request(
            "PUT", f"/v1/products/{_seg(product)}/devices/{_seg(device_id)}", scope=SCOPE_UPDATE, json_body=body
        )
        if isinstance(answer, dict) and isinstance(answer.get("id"), str):
            return ProductDevice.from_json(answer)
        return None

    def lock_device(self, product: str, device_id: str, version: int, *, flash: bool = True) -> ProductDevice | None:
        """Lock a device to product firmware ``version`` (and flash it now when ``flash``)."""
        return self.update_device(product, device_id, desired_firmware_version=version, flash=flash)

    def unlock_device(self, product: str, device_id: str) -> ProductDevice | None:
        return self.update_device(product, device_id, unlock=True)

    def list_firmware(self, product: str) -> tuple[ProductFirmware, ...]:
        """``GET /v1/products/:product/firmware``: every version, lowest first."""
        body = self._request("GET", f"/v1/products/{_seg(product)}/firmware", scope=SCOPE_FIRMWARE_LIST)
        return ProductFirmware.list_from_json(body)

    def download_firmware(self, product: str, version: int) -> bytes:
        """``GET /v1/products/:product/firmware/:version/binary``: the bytes the cloud holds."""
        return self._request_bytes(
            "GET", f"/v1/products/{_seg(product)}/firmware/{int(version)}/binary", scope=SCOPE_FIRMWARE_GET
        )

    def upload_firmware(
        self,
        product: str,
        *,
        version: int,
        title: str,
        binary: bytes,
        description: str | None = None,
        filename: str = "firmware.bin",
    ) -> ProductFirmware:
        """``POST /v1/products/:product/firmware``, multipart: version, title, description, binary."""
        if not title.strip():
            raise ValueError("a firmware upload needs a title")
        if len(binary) > MAX_FIRMWARE_BYTES:
            raise ValueError(f"firmware binary larger than {MAX_FIRMWARE_BYTES} bytes")
        data = {"version": str(int(version)), "title": title}
        if description:
            data["description"] = description
        body = self._request(
            "POST",
            f"/v1/products/{_seg(product)}/firmware",
            scope=SCOPE_FIRMWARE_CREATE,
            data=data,
            files={"binary": (filename, binary, "application/octet-stream")},
            extra_headers={"x-api-version": FIRMWARE_API_VERSION},
        )
        return ProductFirmware.from_json(body)

    def release_firmware(
        self, product: str, version: int, *, groups: Sequence[str] | None = None, product_default: bool | None = None
    ) -> object:
        """``PUT /v1/products/:product/firmware/release``: to ``groups``, or as the product default."""
        body: dict[str, object] = {"version": int(version)}
        if groups:
            body["groups"] = list(groups)
        if product_default is not None:
            body["product_default"] = product_default
        return self._request(
            "PUT", f"/v1/products/{_seg(product)}/firmware/release", scope=SCOPE_FIRMWARE_RELEASE, json_body=body
        )

    def list_groups(self, product: str) -> tuple[ProductGroup, ...]:
        """``GET /v1/products/:product/groups``."""
        body = self._request("GET", f"/v1/products/{_seg(product)}/groups", scope=SCOPE_GROUPS_LIST)
        return ProductGroup.list_from_json(body)

    def create_group(self, product: str, name: str, *, description: str | None = None) -> ProductGroup:
        """``POST /v1/products/:product/groups`` with ``name`` (and ``description``)."""
        body: dict[str, object] = {"name": name}
        if description:
            body["description"] = description
        answer = self._request(
            "POST", f"/v1/products/{_seg(product)}/groups", scope=SCOPE_GROUPS_CREATE, json_body=body
        )
        group = answer.get("group") if isinstance(answer, dict) else None
        return ProductGroup.from_json(group if group is not None else answer)

    # -- plumbing ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        params: dict[str, str | int] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        json_body: object | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> object:
        response, raw, where = self._exchange(
            method, path, params=params, data=data, files=files, json_body=json_body, extra_headers=extra_headers
        )
        return self._interpret(response, raw, where, scope)

    def _request_bytes(self, method: str, path: str, *, scope: str) -> bytes:
        """A binary download: the raw body on 2xx, the usual errors otherwise."""
        response, raw, where = self._exchange(method, path, accept="application/octet-stream")
        if 200 <= response.status_code < 300:
            return raw
        self._interpret(response, raw, where, scope)
        raise CloudUnavailable(f"{where}: HTTP {response.status_code}")  # _interpret raised already

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        json_body: object | None = None,
        extra_headers: dict[str, str] | None = None,
        accept: str | None = None,
    ) -> tuple[httpx.Response, bytes, str]:
        self.limiter.acquire()
        with self._count_lock:
            self.requests_sent += 1
        where = f"{method} {path}"
        headers = dict(extra_headers or {})
        if accept is not None:
            headers["Accept"] = accept
        headers["Authorization"] = f"Bearer {self._token.reveal()}"
        try:
            with self._http.stream(
                method, path, params=params, data=data, files=files, json=json_body, headers=headers
            ) as response:
                raw = self._read_bounded(response, where)
        except httpx.TimeoutException as exc:
            raise CloudUnavailable(f"{where}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise CloudUnavailable(
                f"{where}: connection failed or dropped ({self._clean(str(exc)) or type(exc).__name__})"
            ) from None
        return response, raw, where

    def _read_bounded(self, response: httpx.Response, where: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > self._max_answer:
            raise CloudUnavailable(f"{where}: answer of {declared} bytes is larger than allowed")
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self._total
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_answer:
                raise CloudUnavailable(f"{where}: answer larger than {self._max_answer} bytes")
            if time.monotonic() > deadline:
                raise CloudUnavailable(f"{where}: timed out (answer still arriving after {self._total:g} s)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _interpret(self, response: httpx.Response, raw: bytes, where: str, scope: str) -> object:
        status = response.status_code
        body = _parse_json(raw)
        if 200 <= status < 300:
            if status == 204:
                return {}
            if body is _UNPARSED:
                raise CloudUnavailable(f"{where}: HTTP {status} with a body that is not JSON")
            return body
        code, description = self._error_fields(body)
        detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {description}" if description else "")
        message = f"{where}: {detail}"
        if status == 401:
            raise CloudAuthError(
                message,
                status=status,
                error_code=code,
                hint=f"the token is invalid or expired; retrying will not help: create one with the {scope} scope",
            )
        if status == 403 or (status == 400 and code == "unauthorized"):
            raise CloudAuthError(
                message,
                status=status,
                error_code=code,
                hint=f"the token is not allowed to do this: it needs the {scope} scope on this product",
            )
        if status == 404:
            raise CloudNotFound(
                message, status=status, error_code=code, hint="check the product ID or slug ([cloud] product)"
            )
        if 300 <= status < 400:
            location = self._clean(response.headers.get("location", "")) or "an address it does not name"
            raise CloudRedirected(
                f"{where}: HTTP {status}: the server redirects to {location}",
                status=status,
                error_code=code,
                hint="set [cloud] base_url (or --base-url) to the API's own address; redirects are not followed",
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise CloudRateLimited(message, retry_after=retry_after, error_code=code)
        if status == 408 or status >= 500:
            raise CloudUnavailable(message, status=status, error_code=code)
        if 400 <= status < 500:
            raise CloudRejected(message, status=status, error_code=code)
        raise CloudUnavailable(message, status=status, error_code=code)

    def _error_fields(self, body: object) -> tuple[str | None, str | None]:
        if not isinstance(body, dict):
            return None, None
        code = body.get("error")
        description = body.get("error_description")
        return (
            self._clean(code) if isinstance(code, str) else None,
            self._clean(description) if isinstance(description, str) else None,
        )

    def _clean(self, text: str) -> str:
        """Server text made safe to show: one line, bounded, and never the token (even echoed back)."""
        text = redact(text, self._token.reveal())
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        return text[:_MAX_DESCRIPTION] + ("..." if len(text) > _MAX_DESCRIPTION else "")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ParticleCloud:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_UNPARSED = object()


def _parse_json(raw: bytes) -> object:
    if not raw:
        return _UNPARSED
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _UNPARSED


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``.

    A short secret (only ever a test token: real ones are 40 characters) is replaced only where it
    stands as a word of its own, so that a token ``T`` does not turn "Too many requests" into
    "***oo many requests".
    """
    if len(secret) >= _WORD_ONLY_BELOW:
        return text.replace(secret, "***")
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)


def _seg(value: str) -> str:
    """One URL path segment: nothing in it may add a path level or a query."""
    if not value:
        raise ValueError("an empty path segment")
    return quote(value, safe="")
