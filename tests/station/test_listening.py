"""Listening-mode answers parsed as particle-cli parses them, and the client's bounded waits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.errors import DeviceError, DeviceTimeout, Reason
from station.protocols import listening
from station.protocols.listening import (
    DeviceIdReply,
    ListeningClient,
    ReplyError,
    parse_claimed,
    parse_device_id,
    parse_mac,
    parse_system_info,
    parse_version,
)

DEVICE_ID = "0123456789abcdef01234567"


def test_device_id_plain_form() -> None:
    assert parse_device_id(f"Your device id is {DEVICE_ID}\r\n") == DeviceIdReply(DEVICE_ID)
    assert parse_device_id("Your core id is 53ff6f065075535119171087\r\n") == DeviceIdReply("53ff6f065075535119171087")


def test_device_id_keyed_form_with_modem() -> None:
    text = f"Device ID: {DEVICE_ID}\r\nIMEI: 352753090123456\r\nICCID: 89014103271234567890\r\n"
    assert parse_device_id(text) == DeviceIdReply(DEVICE_ID, "352753090123456", "89014103271234567890")
    text = f"Device ID: {DEVICE_ID}\r\nSerial Number: P046AB1234\r\nDevice Secret: ABCDEFGHIJKLMNO\r\n"
    assert parse_device_id(text) == DeviceIdReply(DEVICE_ID)


def test_device_id_absent() -> None:
    assert parse_device_id("") is None
    assert parse_device_id(f"Device ID:{DEVICE_ID}") is None  # the CLI wants whitespace on both sides


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_parsers_never_crash(text: str) -> None:
    parse_device_id(text)
    parse_mac(text)
    parse_version(text)
    parse_claimed(text)
    with pytest.raises(ReplyError):
        parse_system_info("}" + text.replace("{", ""))


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=12, max_size=12), st.booleans())
def test_device_id_round_trip(raw: bytes, keyed: bool) -> None:
    ident = raw.hex()
    text = f"Device ID: {ident}\r\nIMEI: 1\r\n" if keyed else f"Your device id is {ident}\r\n"
    reply = parse_device_id(text)
    assert reply is not None and reply.device_id == ident


def test_mac_full_and_short_forms() -> None:
    assert parse_mac("Your device MAC address is\r\nAA:bb:cc:dd:ee:ff\r\n") == "aa:bb:cc:dd:ee:ff"
    # Short MAC whose third byte is the USI OUI's: particle-cli restores the OUI.
    assert parse_mac("Your device MAC address is\r\n0b:84:12:34:56\r\n") == "6c:0b:84:12:34:56"
    # Short and not USI: left as it came.
    assert parse_mac("Your device MAC address is\r\n84:aa:bb\r\n") == "84:aa:bb"
    assert parse_mac("no address here") is None


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=6, max_size=6))
def test_mac_round_trip(raw: bytes) -> None:
    mac = ":".join(f"{b:02x}" for b in raw)
    assert parse_mac(f"Your device MAC address is\r\n{mac.upper()}\r\n") == mac


def test_version_and_claimed() -> None:
    assert parse_version("system firmware version: 5.8.0\n\r\n") == "5.8.0"
    assert parse_version("system firmware version: 1.5.0-rc.1 minimal\n\r\n") == "1.5.0-rc.1"
    assert parse_version("version 5") is None
    assert parse_claimed("Device claimed: yes\r\n") is True
    assert parse_claimed("Device claimed: no\r\n") is False


SYSTEM_INFO = (
    '{"p":13,"imei":"352753090123456","iccid":"89014103271234567890","m":['
    '{"s":49152,"l":"m","vc":30,"vv":30,"f":"b","n":"0","v":2200,"d":[]},'
    '{"s":573440,"l":"m","vc":30,"vv":30,"f":"s","n":"1","v":5800,"d":[{"f":"b","n":"0","v":2200,"_":""}]},'
    '{"s":262144,"l":"m","vc":30,"vv":28,"u":"AB12","f":"u","n":"2","v":6,"d":[{"f":"s","n":"1","v":5800,"_":""}]}'
    "]}\r\n"
)


def test_system_info_shape() -> None:
    info = parse_system_info(SYSTEM_INFO)
    assert info.platform_id == 13
    assert dict(info.properties) == {"imei": "352753090123456", "iccid": "89014103271234567890"}
    system = info.find(4, 1)
    assert system is not None and system.version == 5800 and system.valid
    assert system.dependencies == (listening.ModuleDependency(2, 0, 2200),)
    app = info.find(5, 2)
    assert app is not None and app.sha256 == "ab12" and not app.valid and app.max_size == 262144
    assert info.find(5, 1) is None


@pytest.mark.parametrize(
    "text",
    ['{"p":6}', '{"m":[]}', '{"p":6,"m":[1]}', '{"p":6,"m":[{"f":"u"}]}', "{not json}", "nothing"],
)
def test_system_info_malformed(text: str) -> None:
    with pytest.raises(ReplyError):
        parse_system_info(text)


class Scripted:
    """A ByteStream that answers each written key with scripted bursts; ``None`` = a timeout."""

    def __init__(self, answers: dict[bytes, list[bytes | None]]) -> None:
        self.answers = answers
        self.pending: list[bytes | None] = []
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data
        self.pending = list(self.answers.get(data, []))

    def read(self, size: int, timeout: float) -> bytes:
        if not self.pending:
            return b""
        chunk = self.pending.pop(0)
        return chunk or b""


def test_command_collects_bursts_until_a_gap() -> None:
    stream = Scripted({b"i": [b"Your device id ", b"is " + DEVICE_ID.encode() + b"\r\n", None, b"late"]})
    client = ListeningClient(stream, batch_gap=0.01)
    assert client.device_id(timeout=1) == DeviceIdReply(DEVICE_ID)


def test_command_without_answer_times_out() -> None:
    client = ListeningClient(Scripted({}), device="ttyX", batch_gap=0.01)
    with pytest.raises(DeviceTimeout) as err:
        client.version(timeout=0.05)
    assert "'v'" in err.value.message and err.value.device == "ttyX"


def test_garbage_answer_is_a_reply_error() -> None:
    client = ListeningClient(Scripted({b"i": [b"hello\r\n"]}), batch_gap=0.01)
    with pytest.raises(ReplyError):
        client.device_id(timeout=0.1)


def test_start_flash_waits_for_the_prompt_line() -> None:
    prompt = (listening.FLASH_PROMPT + "\r\n").encode()
    client = ListeningClient(Scripted({b"f": [prompt[:20], prompt[20:]]}), removal_wait=0.01)
    client.start_flash(timeout=1)
    ListeningClient(Scripted({b"f": [b"C"]})).start_flash(timeout=1)


def test_start_flash_refuses_device_os_6() -> None:
    prompt = (listening.FLASH_PROMPT + "\r\n").encode()
    answer = [prompt, b"\x18\x18\x18\x18" + (listening.YMODEM_REMOVED + "\r\n").encode()]
    with pytest.raises(DeviceError) as err:
        ListeningClient(Scripted({b"f": answer})).start_flash(timeout=1)
    assert err.value.reason is Reason.REFUSED and "Device OS 6" in err.value.message


def test_start_flash_times_out_without_prompt() -> None:
    with pytest.raises(DeviceTimeout):
        ListeningClient(Scripted({b"f": [b"something else\r\n"]})).start_flash(timeout=0.1)


def test_complete_answers_end_the_wait_without_the_gap() -> None:
    """A whole `v`, `m`, `s` or plain `i` answer is returned at once; what follows is left unread."""
    answers: dict[bytes, list[bytes | None]] = {
        b"v": [b"system firmware version: 5.8.0\n\r\n", b"late"],
        b"m": [b"Your device MAC address is\r\n", b"aa:bb:cc:dd:ee:ff\r\n", b"late"],
        b"s": [SYSTEM_INFO[:50].encode(), SYSTEM_INFO[50:].encode(), b"late"],
        b"i": [f"Your device id is {DEVICE_ID}\r\n".encode(), b"late"],
    }
    stream = Scripted(answers)
    client = ListeningClient(stream, batch_gap=5.0)  # waiting for the gap would read "late" too
    assert client.version(timeout=1) == "5.8.0"
    assert stream.pending == [b"late"]
    assert client.mac(timeout=1) == "aa:bb:cc:dd:ee:ff"
    assert stream.pending == [b"late"]
    assert client.system_info(timeout=1).platform_id == 13
    assert stream.pending == [b"late"]
    assert client.device_id(timeout=1) == DeviceIdReply(DEVICE_ID)
    assert stream.pending == [b"late"]


def test_keyed_identify_waits_for_the_gap() -> None:
    stream = Scripted({b"i": [f"Device ID: {DEVICE_ID}\r\n".encode(), b"IMEI: 12345\r\n", None]})
    reply = ListeningClient(stream, batch_gap=0.01).device_id(timeout=1)
    assert reply == DeviceIdReply(DEVICE_ID, "12345")
