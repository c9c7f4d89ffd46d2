"""The simulated console over raw HTTP: documented import results, paging, errors, limits, faults, state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.cli.sim_console_cmd import parse_listen
from station.errors import InputError
from station.sim.console import RateLimit, SimConsole, SimToken, split_identifiers
from station.sim.console_http import ConsoleServer
from station.sim.console_state import ConsoleState, SimProduct, StateFileError
from station.sim.faults import FaultKind
from tests.station.test_cloud_fixtures import PRODUCT, SLUG, TOKEN, FakeClock, device_ids

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEVICES = f"/v1/products/{PRODUCT}/devices"


@pytest.fixture
def served() -> Iterator[tuple[SimConsole, httpx.Client]]:
    console = SimConsole.with_product(int(PRODUCT), TOKEN, slug=SLUG, platform_id=32)
    with ConsoleServer(console) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        yield console, http


def import_file(http: httpx.Client, text: str, path: str = DEVICES, **data: str) -> httpx.Response:
    return http.post(path, headers=AUTH, files={"file": ("ids.txt", text.encode(), "text/plain")}, data=data)


def test_import_file_classifies_every_id(served: tuple[SimConsole, httpx.Client]) -> None:
    console, http = served
    a, b, c, d, e, f = device_ids(6)
    console.state.claim_elsewhere([c])
    console.state.protect([d])
    console.state.platforms[e] = 6  # an Electron, in a P2 product
    assert import_file(http, b).status_code == 200
    text = f"{a.upper()}\r\n\r\n  {b}  \n{c}\n{d}\n{e}\nnot-a-device\n{a}\n{f}"
    answer = import_file(http, text, import_sims="true")
    assert answer.status_code == 200
    assert answer.json() == {
        "updated": 2,
        "updatedDeviceIds": [a, f],
        "existingDeviceIds": [b],
        "nonmemberDeviceIds": [c],
        "invalidDeviceIds": [e, "not-a-device"],
        "protectedDeviceIds": [d],
    }
    assert console.state.devices[int(PRODUCT)].by_id[a].sim_imported is True
    assert console.stats().added == {a: 1, b: 1, f: 1}


def test_single_id_as_json_or_form_and_by_slug(served: tuple[SimConsole, httpx.Client]) -> None:
    console, http = served
    a, b = device_ids(2)
    assert http.post(DEVICES, headers=AUTH, json={"id": a}).json()["updatedDeviceIds"] == [a]
    answer = http.post(f"/v1/products/{SLUG}/devices", headers=AUTH, data={"id": b, "import_sims": "true"})
    assert answer.json()["updatedDeviceIds"] == [b]
    assert console.product_device_ids(SLUG) == [a, b]


def test_chunked_upload(served: tuple[SimConsole, httpx.Client]) -> None:
    _, http = served
    ids = device_ids(3)
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n" + "\n".join(ids) + f"\r\n--{boundary}--\r\n"
    ).encode()
    parts = (body[i : i + 7] for i in range(0, len(body), 7))
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    answer = http.post(DEVICES, headers=headers, content=parts)
    assert answer.status_code == 200 and answer.json()["updatedDeviceIds"] == ids


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": {"file": ("ids.txt", b"\n \r\n", "text/plain")}}, 400, "invalid_request"),
        ({"content": b"id=1", "headers": {"Content-Type": "text/plain"}}, 400, "invalid_request"),
        ({"json": {"ids": "nope"}}, 400, "invalid_request"),
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 400, "invalid_request"),
    ],
)
def test_bad_import_requests_get_error_bodies(
    served: tuple[SimConsole, httpx.Client], kwargs: dict[str, object], status: int, code: str
) -> None:
    _, http = served
    headers = {**AUTH, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    answer = http.post(DEVICES, headers=headers, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == status
    body = answer.json()
    assert body["error"] == code and body["error_description"]


def test_auth_errors(served: tuple[SimConsole, httpx.Client]) -> None:
    console, http = served
    console.add_token(SimToken("lister", scopes=frozenset({"devices:list"})))
    console.add_token(SimToken("other", products=frozenset({1})))
    assert http.get(DEVICES).status_code == 401
    no = http.get(DEVICES, headers={"Authorization": "Bearer nope"})
    assert no.status_code == 401 and no.json()["error"] == "invalid_token"
    assert http.get(DEVICES, headers={"Authorization": "Bearer lister"}).status_code == 200
    forbidden = http.post(DEVICES, headers={"Authorization": "Bearer lister"}, json={"id": device_ids(1)[0]})
    assert forbidden.status_code == 403 and "devices:import" in forbidden.json()["error_description"]
    assert http.get(DEVICES, headers={"Authorization": "Bearer other"}).status_code == 403
    assert http.get(DEVICES, params={"access_token": TOKEN}).status_code == 200  # deprecated, still works
    assert http.get("/v1/products/999/devices", headers=AUTH).status_code == 404
    assert http.get("/v1/nothing", headers=AUTH).status_code == 404
    assert http.put(DEVICES, headers=AUTH).status_code == 405
    console.revoke_token(TOKEN)
    assert http.get(DEVICES, headers=AUTH).status_code == 401


def test_paged_listing(served: tuple[SimConsole, httpx.Client]) -> None:
    _, http = served
    ids = device_ids(60)
    import_file(http, "\n".join(ids))
    first = http.get(DEVICES, headers=AUTH).json()
    assert first["meta"] == {"page": 1, "per_page": 25, "total_pages": 3, "total": 60}
    assert [d["id"] for d in first["devices"]] == ids[:25]
    assert first["devices"][0]["product_id"] == int(PRODUCT) and first["devices"][0]["platform_id"] == 32
    last = http.get(DEVICES, headers=AUTH, params={"page": 3}).json()
    assert [d["id"] for d in last["devices"]] == ids[50:]
    beyond = http.get(DEVICES, headers=AUTH, params={"page": 9}).json()
    assert beyond["devices"] == [] and beyond["meta"]["total_pages"] == 3
    capped = http.get(DEVICES, headers=AUTH, params={"per_page": 1000}).json()
    assert capped["meta"]["per_page"] == 100 and len(capped["devices"]) == 60
    found = http.get(DEVICES, headers=AUTH, params={"deviceId": ids[42][-6:]}).json()
    assert [d["id"] for d in found["devices"]] == [ids[42]]
    assert http.get(DEVICES, headers=AUTH, params={"page": "0"}).status_code == 400
    one = http.get(f"{DEVICES}/{ids[3].upper()}", headers=AUTH)
    assert one.status_code == 200 and one.json()["id"] == ids[3]
    assert http.delete(f"{DEVICES}/{ids[3]}", headers=AUTH).json() == {"ok": True}
    assert http.get(f"{DEVICES}/{ids[3]}", headers=AUTH).status_code == 404
    assert http.get(f"/v1/products/{SLUG}", headers=AUTH).json()["product"]["id"] == int(PRODUCT)


@pytest.mark.parametrize("retry_after", [True, False])
def test_rate_limit_answers_429(retry_after: bool) -> None:
    clock = FakeClock()
    console = SimConsole.with_product(
        int(PRODUCT), TOKEN, rate_limit=RateLimit(2, 300.0, retry_after=retry_after), clock=clock
    )
    with ConsoleServer(console) as server, httpx.Client(base_url=server.url) as http:
        assert [http.get(DEVICES, headers=AUTH).status_code for _ in range(2)] == [200, 200]
        clock.now += 100
        limited = http.get(DEVICES, headers=AUTH)
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert limited.headers.get("retry-after") == ("200" if retry_after else None)
        clock.now += 200
        assert http.get(DEVICES, headers=AUTH).status_code == 200
    assert console.stats().rate_limited == 1


def test_faults_by_request_number(served: tuple[SimConsole, httpx.Client]) -> None:
    console, http = served
    console.inject_spec("error-status@2,corrupt-reply@3,disconnect@4")
    a, b, c = device_ids(3)
    assert http.post(DEVICES, headers=AUTH, json={"id": a}).status_code == 200
    unavailable = http.post(DEVICES, headers=AUTH, json={"id": b})
    assert unavailable.status_code == 503 and unavailable.json()["error_description"]
    corrupt = http.post(DEVICES, headers=AUTH, json={"id": b})
    assert corrupt.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        corrupt.json()
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(DEVICES, headers=AUTH, json={"id": c})
    assert console.product_device_ids(PRODUCT) == [a, b, c]  # corrupt and dropped answers: done anyway
    console.stall_seconds = 0.5
    console.inject(FaultKind.STALL)
    with pytest.raises(httpx.ReadTimeout):
        http.get(DEVICES, headers=AUTH, timeout=0.1)
    console.set_offline(True)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(DEVICES, headers=AUTH)
    stats = console.stats()
    assert stats.faults == 4 and stats.dropped == 2
    with pytest.raises(ValueError, match="unknown fault"):
        console.inject_spec("explode@1")


def test_body_limits() -> None:
    console = SimConsole.with_product(int(PRODUCT), TOKEN, max_import=2)
    with ConsoleServer(console, max_body=1000) as server, httpx.Client(base_url=server.url) as http:
        too_many = import_file(http, "\n".join(device_ids(3)))
        assert too_many.status_code == 400 and "Too many devices" in too_many.json()["error_description"]
        huge = import_file(http, "a" * 5000)
        assert huge.status_code == 413


def test_state_survives_restart_and_is_private(tmp_path: Path) -> None:
    state = tmp_path / "console.json"
    console = SimConsole.with_product(int(PRODUCT), TOKEN, slug=SLUG, state_file=state)
    console.state.claim_elsewhere([f"{5:024x}"])
    with ConsoleServer(console) as server, httpx.Client(base_url=server.url) as http:
        import_file(http, "\n".join(device_ids(3)))
    assert state.stat().st_mode & 0o777 == 0o600
    assert TOKEN not in state.read_text()
    again = SimConsole.with_product(int(PRODUCT), "other-token", state_file=state)
    assert again.product_device_ids(SLUG) == device_ids(3)
    assert again.state.claimed_elsewhere == {f"{5:024x}"}
    state.write_text('{"version": 1, "products": [{"id": "x"}]}')
    with pytest.raises(StateFileError):
        ConsoleState.load(state)


def test_state_round_trip() -> None:
    state = ConsoleState()
    state.add_product(SimProduct(7, "seven", platform_id=12))
    with pytest.raises(ValueError, match="taken"):
        state.add_product(SimProduct(8, "seven"))
    state.protect(["AB" * 12])
    assert ConsoleState.from_json(json.loads(json.dumps(state.to_json()))).to_json() == state.to_json()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", " ", "\t", "  "]),
            st.sampled_from(["", "abc", "0123456789abcdef01234567", "a b"]),
            st.sampled_from(["", " ", "\t"]),
            st.sampled_from(["\n", "\r\n"]),
        ),
        max_size=20,
    )
)
def test_split_identifiers_like_particle_cli(lines: list[tuple[str, str, str, str]]) -> None:
    text = "".join(pad + word + tail + end for pad, word, tail, end in lines)
    assert split_identifiers(text) == [word for _, word, _, _ in lines if word]


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9") == ("127.0.0.1", 9)
    for bad in ("8080", "host:", "h:99999"):
        with pytest.raises(InputError):
            parse_listen(bad)


def test_station_sim_console_command(tmp_path: Path) -> None:
    """The command people run: serves until a signal, then saves its state."""
    state = tmp_path / "state.json"
    station = "import sys; from station.cli import main; sys.argv[0] = 'station'; main()"
    env = {**os.environ, "BENCHFLASH_SIM_TOKEN": TOKEN}
    command = [sys.executable, "-c", station, "sim", "console", "--product", PRODUCT, "--slug", SLUG]
    command += ["--listen", "127.0.0.1:0", "--state", str(state), "--claimed-elsewhere", f"{9:024x}"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "simulated console on http://127.0.0.1:" in banner and TOKEN not in banner
        url = banner.split(" on ", 1)[1].split(" ", 1)[0]
        with httpx.Client(base_url=url, timeout=5) as http:
            answer = import_file(http, "\n".join([*device_ids(2), f"{9:024x}"]))
        assert answer.json()["nonmemberDeviceIds"] == [f"{9:024x}"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert TOKEN not in out + err
    saved = ConsoleState.load(state)
    assert list(saved.devices[int(PRODUCT)].order) == device_ids(2)

    # --json: where it listens as one line a script can read; the state file is loaded again.
    proc = subprocess.Popen([*command, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        where = json.loads(proc.stdout.readline())
        assert where["product"] == int(PRODUCT) and where["slug"] == SLUG
        assert where["handshake"] == f"{where['url']}/sim/products/{PRODUCT}/devices/DEVICE_ID/handshake"
        with httpx.Client(base_url=where["url"], timeout=5) as http:
            listed = http.get(DEVICES, headers=AUTH).json()["devices"]
        assert [d["id"] for d in listed] == device_ids(2)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_non_ascii_digits_are_not_numbers(served: tuple[SimConsole, httpx.Client]) -> None:
    _, http = served
    assert http.get(DEVICES, headers=AUTH, params={"page": "\u00b9"}).status_code == 400
    assert http.get("/v1/products/\u00b9\u00b2/devices", headers=AUTH).status_code == 404
    with pytest.raises(InputError):
        parse_listen("127.0.0.1:\u00b9")


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from([DEVICES, f"/v1/products/{SLUG}/devices/abc", f"/v1/products/{PRODUCT}", "/v1/x", "/"]),
    ctype=st.sampled_from(
        ["", "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "x/y"]
    ),
    body=st.binary(max_size=300),
    query=st.dictionaries(st.sampled_from(["page", "per_page", "deviceId", "groups"]), st.text(max_size=5)),
)
def test_any_request_gets_an_answer(method: str, path: str, ctype: str, body: bytes, query: dict[str, str]) -> None:
    from station.sim.console_http import ApiRequest

    console = SimConsole.with_product(int(PRODUCT), TOKEN, slug=SLUG)
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": ctype}
    reply = console.handle(ApiRequest(method, path, query, headers, body, "127.0.0.1"))
    assert reply.response is not None
    assert reply.response.status in (200, 400, 404, 405)
    if reply.response.status != 200:
        assert isinstance(reply.response.body, dict) and set(reply.response.body) == {"error", "error_description"}


def test_a_client_that_hangs_up_is_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    import socket
    import struct

    console = SimConsole.with_product(int(PRODUCT), TOKEN, latency=0.2)
    request = f"GET /v1/products/{PRODUCT}/devices HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with ConsoleServer(console) as server:
        # A kept-alive connection reset while idle (a client that timed out), one reset mid-request,
        # one reset before its answer: each is a killed or impatient station, none a server fault.
        for sent, wait in ((request, 0.4), (request[:10], 0.0), (request, 0.0)):
            with socket.create_connection((server.host, server.port), timeout=5) as sock:
                sock.sendall(sent)
                time.sleep(wait)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=5) as http:
            assert http.get(DEVICES, headers=AUTH).status_code == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err
