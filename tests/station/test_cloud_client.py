"""The httpx client against the simulated console on loopback: requests, answers, every error class."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from station.cloud.client import ParticleCloud
from station.cloud.config import Timeouts
from station.cloud.errors import (
    CloudAuthError,
    CloudConfigError,
    CloudError,
    CloudNotFound,
    CloudRateLimited,
    CloudRedirected,
    CloudRejected,
    CloudUnavailable,
)
from station.cloud.models import ImportOutcome
from station.cloud.sync import SyncWorker
from station.cloud.token import AccessToken
from station.sim.console import RateLimit, SimToken
from station.sim.console_http import ConsoleServer
from station.sim.faults import FaultKind
from station.store import OutboxState, Registry
from tests.station.test_cloud_fixtures import (  # noqa: F401  (the `cloud` and `registry` fixtures)
    PRODUCT,
    SLUG,
    TOKEN,
    Cloud,
    FakeClock,
    cloud_fixture,
    device_ids,
    registry_fixture,
    start_cloud,
)


def test_import_then_list_page_by_page(cloud: Cloud) -> None:
    cloud.console.state.claim_elsewhere([f"{999:024x}"])
    ids = device_ids(130)
    with cloud.client() as client:
        first = client.import_devices(SLUG, [*ids, f"{999:024x}", "garbage"])
        assert first.updated == 130
        assert first.outcomes([*ids[:2], "garbage"]) == {
            ids[0]: ImportOutcome.UPDATED,
            ids[1]: ImportOutcome.UPDATED,
            "garbage": ImportOutcome.INVALID,
        }
        again = client.import_devices(PRODUCT, [ids[0].upper()])
        assert again.outcomes([ids[0].upper()]) == {ids[0].upper(): ImportOutcome.EXISTING}
        page = client.list_devices(PRODUCT, page=2, per_page=50)
        assert (page.page, page.per_page, page.total_pages, page.total) == (2, 50, 3, 130)
        assert [d.id for d in page.devices] == ids[50:100]
        listed = [d.id for d in client.iter_devices(SLUG, per_page=40)]
        assert listed == ids
        assert client.get_device(PRODUCT, ids[5]).product_id == int(PRODUCT)
        assert client.requests_sent == 2 + 1 + 4 + 1


def test_request_shape_bearer_multipart_and_sims() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"updated": 2, "nonmemberDeviceIds": [], "invalidDeviceIds": []})

    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(answer))
    client.import_devices("acme", ["aa", "bb"], import_sims=True)
    request = seen[0]
    assert str(request.url) == "https://api.particle.io/v1/products/acme/devices"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"].startswith("benchflash")
    body = request.read()
    assert b'name="file"; filename="devices.txt"' in body
    assert b"aa\nbb\n" in body
    assert b'name="import_sims"' in body and b"true" in body
    assert TOKEN.encode() not in body and TOKEN not in str(request.url)


def test_path_segments_cannot_escape() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"error": "not_found"})

    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(answer))
    with pytest.raises(CloudNotFound):
        client.get_device("acme", "../../v1/user?x=1")
    assert seen == ["/v1/products/acme/devices/..%2F..%2Fv1%2Fuser%3Fx%3D1"]


def test_bad_token_401_names_the_scope_and_hides_the_token(cloud: Cloud) -> None:
    with cloud.client("wrong-token-value") as client, pytest.raises(CloudAuthError) as info:
        client.import_devices(PRODUCT, device_ids(1))
    message = str(info.value)
    assert info.value.status == 401 and "devices:import" in message
    assert "The access token provided is invalid" in message
    assert "wrong-token-value" not in message


def test_missing_scope_and_other_product_are_403(cloud: Cloud) -> None:
    cloud.console.add_token(SimToken("list-only", scopes=frozenset({"devices:list"})))
    cloud.console.add_token(SimToken("other-product", products=frozenset({7})))
    with cloud.client("list-only") as client:
        with pytest.raises(CloudAuthError, match="devices:import") as info:
            client.import_devices(PRODUCT, device_ids(1))
        assert info.value.status == 403
        assert client.list_devices(PRODUCT).total_pages == 0
    with cloud.client("other-product") as client, pytest.raises(CloudAuthError):
        client.list_devices(PRODUCT)


def test_unknown_product_is_not_found(cloud: Cloud) -> None:
    with cloud.client() as client, pytest.raises(CloudNotFound, match="product"):
        client.import_devices("no-such-product", device_ids(1))


def test_400_is_rejected_and_400_unauthorized_is_auth() -> None:
    cloud = start_cloud(max_import=2)
    try:
        with cloud.client() as client, pytest.raises(CloudRejected, match="Too many devices") as info:
            client.import_devices(PRODUCT, device_ids(3))
        assert info.value.status == 400
    finally:
        cloud.server.stop()

    def api_user(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": "unauthorized", "error_description": "API users are not allowed to call this endpoint"}
        )

    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(api_user))
    with pytest.raises(CloudAuthError, match="API users are not allowed"):
        client.import_devices("1", ["a"])


@pytest.mark.parametrize("retry_after", [True, False])
def test_429_carries_retry_after_when_sent(retry_after: bool) -> None:
    clock = FakeClock()
    cloud = start_cloud(rate_limit=RateLimit(1, 60.0, retry_after=retry_after), clock=clock)
    try:
        with cloud.client() as client:
            client.list_devices(PRODUCT)
            with pytest.raises(CloudRateLimited) as info:
                client.list_devices(PRODUCT)
            assert info.value.retry_after == (60.0 if retry_after else None)
            assert info.value.status == 429
            clock.now += 61
            client.list_devices(PRODUCT)
    finally:
        cloud.server.stop()


def test_server_error_timeout_drop_corrupt_offline(cloud: Cloud) -> None:
    cloud.console.stall_seconds = 2.0
    short = Timeouts(connect=2, read=0.3, write=2, pool=2)
    with cloud.client(timeouts=short) as client:
        cloud.console.inject(FaultKind.ERROR_STATUS)
        with pytest.raises(CloudUnavailable, match="HTTP 503") as info:
            client.import_devices(PRODUCT, device_ids(1))
        assert info.value.status == 503
        cloud.console.inject(FaultKind.STALL)
        with pytest.raises(CloudUnavailable, match="timed out"):
            client.import_devices(PRODUCT, device_ids(1))
        cloud.console.inject(FaultKind.DISCONNECT)
        with pytest.raises(CloudUnavailable, match="connection"):
            client.import_devices(PRODUCT, device_ids(1, start=1))
        cloud.console.inject(FaultKind.CORRUPT_REPLY)
        with pytest.raises(CloudUnavailable, match="not JSON"):
            client.import_devices(PRODUCT, device_ids(1, start=2))
        cloud.console.set_offline(True)
        with pytest.raises(CloudUnavailable):
            client.list_devices(PRODUCT)
        cloud.console.set_offline(False)
        # The stalled, dropped and corrupt requests were acted on: the cloud already has those devices.
        result = client.import_devices(PRODUCT, device_ids(3))
        assert result.updated == 0 and result.existing_ids == tuple(device_ids(3))


def test_connection_refused_is_unavailable() -> None:
    cloud = start_cloud()
    url = cloud.url
    cloud.server.stop()
    client = ParticleCloud(AccessToken(TOKEN, source="t"), base_url=url, timeouts=Timeouts(2, 2, 2, 2))
    with pytest.raises(CloudUnavailable, match="connection failed"):
        client.list_devices(PRODUCT)


def test_answer_size_is_bounded(cloud: Cloud) -> None:
    client = ParticleCloud(AccessToken(TOKEN, source="t"), base_url=cloud.url, max_answer_bytes=1000)
    with client, pytest.raises(CloudUnavailable, match="larger than"):
        client.import_devices(PRODUCT, device_ids(100))


def test_token_echoed_by_a_server_is_redacted() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "bad", "error_description": f"token {TOKEN} is odd\n\x1b[31m"})

    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(echo))
    with pytest.raises(CloudRejected) as info:
        client.import_devices("1", ["a"])
    assert TOKEN not in str(info.value) and "token *** is odd" in str(info.value)
    assert "\x1b" not in str(info.value)


def test_a_redirect_is_not_followed_nor_retried(registry: Registry) -> None:
    sent: list[httpx.Request] = []

    def moved(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(301, headers={"Location": "http://api.example.com/v1/products/1/devices"})

    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(moved))
    with client, pytest.raises(CloudRedirected) as info:
        client.import_devices("1", ["a"])
    assert "redirects to http://api.example.com/v1/products/1/devices" in str(info.value)
    assert "base_url" in (info.value.hint or "") and len(sent) == 1
    # The sync stops at once (fatal), as for a bad token: the same request gets the same redirect.
    registry.outbox.enqueue_many(device_ids(3), "1")
    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(moved))
    with client:
        report = SyncWorker(registry.outbox, client, product="1", sleep=lambda s: None).drain(max_failures=None)
    assert isinstance(report.fatal, CloudRedirected) and len(sent) == 2
    assert registry.outbox.counts("1")[OutboxState.PENDING] == 3


def test_a_short_test_token_is_redacted_as_a_word_only() -> None:
    from station.cloud.client import redact

    # `station sim console --token T` is how people try it: "Too many" must stay readable.
    assert redact("HTTP 429: Too many requests", "T") == "HTTP 429: Too many requests"
    assert redact("token T is odd; T", "T") == "token *** is odd; ***"
    assert redact("x=T&y", "T") == "x=***&y"
    # A real-length token is removed wherever it appears, even glued to other text.
    assert redact(f"abc{TOKEN}def", TOKEN) == "abc***def"


def test_plain_http_off_loopback_is_refused() -> None:
    with pytest.raises(CloudConfigError, match="loopback"):
        ParticleCloud(AccessToken(TOKEN, source="t"), base_url="http://api.particle.io")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_certificates_are_verified(tmp_path: Path) -> None:
    cloud = start_cloud()
    cloud.server.stop()
    server = ConsoleServer(cloud.console)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    httpd = server._httpd
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server.start()
    try:
        client = ParticleCloud(
            AccessToken(TOKEN, source="t"),
            base_url=f"https://127.0.0.1:{server.port}",
            timeouts=Timeouts(3, 3, 3, 3),
        )
        with client, pytest.raises(CloudUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            client.list_devices(PRODUCT)
        assert cloud.console.stats().requests == 0
    finally:
        server.stop()


def test_loopback_ignores_proxy_settings(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    with cloud.client() as client:
        assert client.list_devices(PRODUCT).total_pages == 0


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 599]),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"updated": st.integers(-1, 3)},
            optional={
                "updatedDeviceIds": st.lists(st.text(max_size=30), max_size=3),
                "invalidDeviceIds": st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=3), st.text()),
                "error": st.text(max_size=10),
                "error_description": st.text(max_size=30),
            },
        ).map(lambda v: json.dumps(v).encode()),
    ),
    retry_after=st.one_of(st.none(), st.text(max_size=12)),
)
def test_any_answer_is_a_result_or_a_cloud_error(status: int, body: bytes, retry_after: str | None) -> None:
    headers = {} if retry_after is None else {b"Retry-After": retry_after.encode("utf-8")}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    client = ParticleCloud(AccessToken(TOKEN, source="t"), transport=httpx.MockTransport(answer))
    try:
        result = client.import_devices("1", ["aa", "bb"])
    except CloudError as exc:
        assert TOKEN not in str(exc)
    else:
        assert set(result.outcomes(["aa", "bb"])) == {"aa", "bb"}


def test_a_trickled_answer_still_ends() -> None:
    class Trickle(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(100):
                time.sleep(0.02)
                yield b" "

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Trickle())

    client = ParticleCloud(
        AccessToken(TOKEN, source="t"),
        transport=httpx.MockTransport(answer),
        timeouts=Timeouts(connect=1, read=1, write=1, pool=1, total=0.2),
    )
    started = time.monotonic()
    with pytest.raises(CloudUnavailable, match="still arriving"):
        client.list_devices("1")
    assert time.monotonic() - started < 1.5
