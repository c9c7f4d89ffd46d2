"""Issue 13 item 4: Intel HEX reading bounded in time and memory, and FIFOs refused at once.

Each case runs in its own child process, so its peak RSS (``VmHWM``) is its own:

- sparse: a 72-byte file with two data records 32 MiB apart must be refused in < 0.2 s;
- dense: a 4 MiB image as HEX must be read in < 1 s with < 200 MB peak RSS;
- fifo: ``fwtool inspect`` on a FIFO nobody writes must exit 2 at once (< 2 s, process start included).

For comparison the dense file is also handed to intelhex's own ``loadhex`` + ``tobinstr`` (the
reader before this issue), in its own child too. Prints each figure and its target.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import sys, time
from pathlib import Path
path, how = sys.argv[1], sys.argv[2]
t = time.perf_counter()
outcome = "read"
if how == "ours":
    from firmware_tools.errors import FormatError
    from firmware_tools.formats import read_firmware
    try:
        size = len(read_firmware(path).data)
    except FormatError as exc:
        outcome, size = "refused: " + exc.message[:60], 0
else:
    import io
    from intelhex import IntelHex
    ih = IntelHex()
    ih.loadhex(io.StringIO(Path(path).read_text()))
    size = len(ih.tobinstr(start=ih.minaddr(), end=ih.maxaddr()))
seconds = time.perf_counter() - t
# VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork + exec.
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(seconds, hwm / 1024, size, outcome, sep="\t")
"""


def _run_child(path: Path, how: str) -> tuple[float, float, int, str]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), how], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    seconds, rss, size, outcome = out.strip().split("\t")
    return float(seconds), float(rss), int(size), outcome


def _record(address: int, data: bytes, kind: int = 0) -> str:
    body = bytes([len(data), (address >> 8) & 0xFF, address & 0xFF, kind]) + data
    return ":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper() + "\n"


def sparse_hex() -> bytes:
    """Two one-byte records 32 MiB apart: 72 bytes with the EOF record."""
    text = _record(0, b"\x00\x00", 4) + _record(0, b"\x01") + _record(0, b"\x02\x00", 4) + _record(0, b"\x02")
    text += ":00000001FF\n"
    return text.encode("ascii")


def dense_hex(size: int) -> bytes:
    from firmware_tools.ihex import bin_to_hex

    return bin_to_hex(os.urandom(size), 0x08000000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dense-mib", type=int, default=4, help="size of the dense image (default 4 MiB)")
    parser.add_argument("--skip-intelhex", action="store_true", help="do not run the intelhex comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        sparse = tmp / "sparse.hex"
        sparse.write_bytes(sparse_hex())
        seconds, rss, _size, outcome = _run_child(sparse, "ours")
        print(
            f"sparse {sparse.stat().st_size}-byte HEX, records 32 MiB apart: {outcome} in {seconds:.4f} s "
            f"(target < 0.2 s; {seconds / 0.2:.3f} of it), peak RSS {rss:.0f} MB"
        )

        dense = tmp / "dense.hex"
        dense.write_bytes(dense_hex(args.dense_mib * 1024 * 1024))
        seconds, rss, size, outcome = _run_child(dense, "ours")
        print(
            f"dense {args.dense_mib} MiB image ({dense.stat().st_size} bytes of HEX): {outcome} {size} bytes "
            f"in {seconds:.3f} s (target < 1 s; {seconds:.3f} of it), peak RSS {rss:.0f} MB "
            f"(target < 200 MB; {rss / 200:.2f} of it)"
        )
        if not args.skip_intelhex:
            i_seconds, i_rss, _size, _ = _run_child(dense, "intelhex")
            print(
                f"  intelhex loadhex+tobinstr on the same file: {i_seconds:.3f} s, peak RSS {i_rss:.0f} MB "
                f"(ours: {seconds / i_seconds:.2f}x the time, {rss / i_rss:.2f}x the memory)"
            )

        fifo = tmp / "fifo"
        os.mkfifo(fifo)
        fwtool = Path(sys.executable).with_name("fwtool")
        t = time.perf_counter()
        done = subprocess.run([str(fwtool), "inspect", str(fifo)], capture_output=True, timeout=30)
        seconds = time.perf_counter() - t
        print(
            f"fwtool inspect on a FIFO: exit {done.returncode} in {seconds:.2f} s, process start included "
            f"(target exit 2 at once)"
        )


if __name__ == "__main__":
    main()
