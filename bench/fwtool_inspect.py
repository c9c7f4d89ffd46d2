"""fwtool inspect speed: whole-process wall time on one file and on the whole corpus in one process.

Targets (issue 2): one file under 0.15 s, the corpus under 0.5 s. Also files per second, and the
same work with Particle's own `particle binary inspect` where particle-cli is installed (issue 7):
on PATH, or named by PARTICLE_CLI (e.g. `npm install --prefix /tmp/pcli particle-cli`, then
PARTICLE_CLI=/tmp/pcli/node_modules/.bin/particle). It runs with --no-update-check, so no network.

Per file, like for like (issue 17): the same Particle files parsed in one process each, fwtool's
``describe_file`` (what ``inspect --json`` prints per file) against the reference parser itself,
binary-version-reader's ``HalModuleParser.parseFile`` under node (``bench/_reference_inspect.js``),
each after a warm-up round; target: fwtool at most 1.0x the reference's time per file. The reference
is looked for in ``.cache/npm/node_modules`` (where `make test` puts it) or ``BVR_NODE_MODULES``
(`npm install --prefix /tmp/bvr binary-version-reader`, then BVR_NODE_MODULES=/tmp/bvr/node_modules).
Run with `make bench` or `.venv/bin/python bench/fwtool_inspect.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BENCHFLASH_FIXTURES", ROOT.parent / "shared" / "fixtures"))
FWTOOL = Path(sys.executable).with_name("fwtool")
REPEATS = 7
ONE_FILE_TARGET = 0.15
CORPUS_TARGET = 0.5
PER_FILE_TARGET = 1.0  # x the reference parser's time per file
ROUNDS = 20
REFERENCE_JS = Path(__file__).with_name("_reference_inspect.js")


def fwtool_per_file(files: list[Path], rounds: int) -> float:
    """Seconds per file of ``describe_file`` + JSON, in this process, after one warm-up round."""
    from firmware_tools.cli.inspect_cmd import describe_file
    from firmware_tools.errors import FirmwareError

    def one_round() -> None:
        for f in files:
            # A file that is not a module is refused, as the reference refuses it.
            with contextlib.suppress(FirmwareError):
                json.dumps(describe_file(f))

    one_round()
    start = time.perf_counter()
    for _ in range(rounds):
        one_round()
    return (time.perf_counter() - start) / rounds / len(files)


def reference_per_file(modules: Path, files: list[Path], rounds: int) -> float:
    out = subprocess.run(
        ["node", str(REFERENCE_JS), str(modules), str(rounds), *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout)["seconds_per_file"])


def per_file_comparison(files: list[Path]) -> None:
    modules = Path(os.environ.get("BVR_NODE_MODULES", ROOT / ".cache" / "npm" / "node_modules"))
    if not (modules / "binary-version-reader").is_dir() or shutil.which("node") is None:
        print(f"binary-version-reader not found under {modules} (or no node): no per-file comparison")
        return
    ours, theirs = [], []
    for _ in range(3):  # interleaved, so drift in the machine's load falls on both alike
        theirs.append(reference_per_file(modules, files, ROUNDS))
        ours.append(fwtool_per_file(files, ROUNDS))
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"per file, one process each ({len(files)} Particle files x {ROUNDS} rounds, 3 interleaved runs):"
        f" fwtool {statistics.median(ours) * 1000:.3f} ms (min {min(ours) * 1000:.3f}, max {max(ours) * 1000:.3f}),"
        f" binary-version-reader {statistics.median(theirs) * 1000:.3f} ms"
        f" (min {min(theirs) * 1000:.3f}, max {max(theirs) * 1000:.3f}): {ratio:.2f}x (target <= {PER_FILE_TARGET})"
    )


def wall(cmd: list[str]) -> float:
    """Median wall time of ``cmd`` over REPEATS runs (exit code 2 is fine: the corpus holds non-modules)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1, 2):
            raise SystemExit(f"{cmd[0]} exited {proc.returncode}")
    return statistics.median(times)


def main() -> None:
    files = sorted(CORPUS.glob("particle/*.bin")) + sorted(CORPUS.glob("esp/*.bin"))
    if not files:
        raise SystemExit(f"no corpus at {CORPUS} (set BENCHFLASH_FIXTURES)")
    one = CORPUS / "particle" / "product_firmware.bin"
    python_floor = wall([sys.executable, "-c", "pass"])
    t_one = wall([str(FWTOOL), "inspect", "--json", str(one)])
    t_all = wall([str(FWTOOL), "inspect", "--json", *map(str, files)])
    print(f"python start-up alone:         {python_floor:.3f} s")
    ratio_one = t_one / ONE_FILE_TARGET
    print(f"inspect --json, one file:      {t_one:.3f} s  (target {ONE_FILE_TARGET} s: {ratio_one:.2f}x)")
    print(
        f"inspect --json, {len(files)} files:     {t_all:.3f} s  (target {CORPUS_TARGET} s: "
        f"{t_all / CORPUS_TARGET:.2f}x); {len(files) / t_all:.0f} files/s"
    )
    particle = os.environ.get("PARTICLE_CLI") or shutil.which("particle")
    if particle:
        pfiles = [str(f) for f in sorted(CORPUS.glob("particle/*.bin"))]
        t_p_one = wall([particle, "--no-update-check", "binary", "inspect", str(one)])
        speedup = t_p_one / t_one
        print(f"particle binary inspect, one:  {t_p_one:.3f} s  (benchflash is {speedup:.1f}x faster)")
        start = time.perf_counter()
        for f in pfiles:
            subprocess.run([particle, "--no-update-check", "binary", "inspect", f], capture_output=True, check=False)
        t_p_all = time.perf_counter() - start
        print(
            f"particle binary inspect, {len(pfiles)} files (one process each): {t_p_all:.2f} s; "
            f"{len(pfiles) / t_p_all:.1f} files/s"
        )
    else:
        print("particle-cli not installed (PATH or PARTICLE_CLI): no comparison with `particle binary inspect`")
    per_file_comparison(sorted(CORPUS.glob("particle/*.bin")))


if __name__ == "__main__":
    main()
