"""What the simulated console's route handlers share: tokens, the route table's row type, the routed
call, error bodies, and request body parsing (JSON, urlencoded, multipart)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from station.sim.console_http import ApiRequest, ApiResponse
from station.sim.console_state import SimProduct

if TYPE_CHECKING:
    from station.sim.console import SimConsole


@dataclass(frozen=True)
class SimToken:
    """An access token the console accepts. None means every product / every scope (a user token)."""

    value: str = field(repr=False)
    products: frozenset[int] | None = None
    scopes: frozenset[str] | None = None

    def allows_scope(self, scope: str | None) -> bool:
        return scope is None or self.scopes is None or scope in self.scopes

    def allows_product(self, product_id: int) -> bool:
        return self.products is None or product_id in self.products


# -- routing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A routed, authorized request: the route's path parameters, the product when the path names one."""

    request: ApiRequest
    params: Mapping[str, str]
    token: SimToken
    product: SimProduct | None


Handler = Callable[["SimConsole", Call], ApiResponse]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # e.g. "/v1/products/{product}/devices/{device_id}"
    handler: Handler
    scope: str | None = None
    mutates: bool = False  # the state file is saved after it answers
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex))


def error(status: int, code: str, description: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiResponse:
    return ApiResponse(status, {"error": code, "error_description": description}, headers)


# -- request bodies -------------------------------------------------------------------------------


class FormError(ValueError):
    pass


@dataclass(frozen=True)
class Form:
    fields: Mapping[str, str]
    files: Mapping[str, bytes]  # by form field name


def parse_form(request: ApiRequest) -> Form:
    """JSON, urlencoded or multipart bodies, the three forms Particle's tools send."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";", 1)[0].strip().lower()
    if not request.body:
        return Form({}, {})
    if kind == "application/json":
        try:
            data = json.loads(request.body)
        except ValueError:
            raise FormError("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise FormError("JSON body must be an object")
        return Form({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}, {})
    if kind == "application/x-www-form-urlencoded":
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise FormError("form body is not UTF-8") from None
        return Form({k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}, {})
    if kind == "multipart/form-data":
        return _parse_multipart(ctype, request.body)
    raise FormError(f"unsupported Content-Type {kind or '(none)'}")


def _parse_multipart(ctype: str, body: bytes) -> Form:
    head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", errors="replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FormError("multipart body without parts (missing boundary?)")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            files[name] = data
        else:
            fields[name] = data.decode("utf-8", errors="replace")
    return Form(fields, files)


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "on")


_LINE_BREAK = re.compile(r"\r?\n")


def split_identifiers(text: str) -> list[str]:
    """One identifier per line; CRLF or LF, trimmed, blank lines dropped (as particle-cli reads files)."""
    return [line.strip() for line in _LINE_BREAK.split(text) if line.strip()]
