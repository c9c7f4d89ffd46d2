"""``station sync`` through click's CliRunner, and as a real process killed with SIGKILL mid-sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from station.cli import main
from station.sim.faults import FaultKind
from station.store import OutboxState, Registry
from tests.station.test_cloud_fixtures import (  # noqa: F401  (the cloud fixture)
    PRODUCT,
    TOKEN,
    Cloud,
    bulk_enqueue,
    cloud_fixture,
    device_ids,
)


def make_db(path: Path, ids: list[str], product: str = PRODUCT) -> None:
    with Registry(path) as registry:
        bulk_enqueue(registry, ids, product)


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_sync_prints_counts_and_ids_needing_attention(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    nonmember = f"{777:024x}"
    cloud.console.state.claim_elsewhere([nonmember])
    make_db(db, [*device_ids(30), nonmember, "zz-bad"])
    code, out, err = run(
        ["sync", "--db", str(db), "--product", PRODUCT, "--base-url", cloud.url, "--batch-size", "10"],
        env={"PARTICLE_ACCESS_TOKEN": TOKEN},
    )
    assert code == 1, err
    assert f"product {PRODUCT}: 0 pending, 30 synced, 1 invalid, 1 needs-attention, 0 protected" in out
    assert "4 request(s), 32 device(s) sent" in out
    assert f"{nonmember}  needs-attention  claimed by an account outside the product team" in out
    assert "zz-bad  invalid" in out
    assert TOKEN not in out + err


def test_clean_sync_exits_0_and_json_and_verify(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(25))
    env = {"ACME_TOKEN": TOKEN}
    args = ["sync", "--db", str(db), "--base-url", cloud.url, "--token-env", "ACME_TOKEN", "--verify", "--json"]
    code, out, err = run(args, env=env)
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True and report["attention"] == 0
    (product,) = report["products"]
    assert product["product"] == PRODUCT
    assert product["counts"]["synced"] == 25
    assert product["run"]["outcomes"] == {"updated": 25}
    assert product["verify"] == {
        "ok": True,
        "listed": 25,
        "believed_synced": 25,
        "missing": [],
        "listed_but_pending": [],
    }
    # Someone removes a device in the console: --verify notices, and says which.
    with cloud.client() as client:
        client._request("DELETE", f"/v1/products/{PRODUCT}/devices/{device_ids(1)[0]}", scope="devices:remove")
    code, out, _ = run(args, env=env)
    assert code == 1
    assert json.loads(out)["products"][0]["verify"]["missing"] == [device_ids(1)[0]]


def test_dry_run_needs_no_token_and_sends_nothing(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(1201))
    code, out, _ = run(["sync", "--db", str(db), "--dry-run", "--base-url", cloud.url], env={})
    assert code == 0
    assert "would send 1201 device(s) in 3 request(s)" in out
    assert cloud.console.stats().requests == 0


def test_token_file_and_its_mode(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(3))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    args = ["sync", "--db", str(db), "--base-url", cloud.url, "--token-file", str(token_file)]
    code, out, err = run(args, env={})
    assert code == 2
    assert f"chmod 600 {token_file}" in err and TOKEN not in out + err
    token_file.chmod(0o600)
    code, out, err = run(args, env={})
    assert code == 0, err
    assert "3 synced" in out


def test_missing_token_is_a_usage_error(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(3))
    code, _, err = run(["sync", "--db", str(db), "--base-url", cloud.url], env={"PARTICLE_ACCESS_TOKEN": ""})
    assert code == 2 and "PARTICLE_ACCESS_TOKEN" in err


def test_rejected_token_stops_with_scope_and_exit_1(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(3))
    secret = "f" * 40
    code, out, err = run(["sync", "--db", str(db), "--base-url", cloud.url], env={"PARTICLE_ACCESS_TOKEN": secret})
    assert code == 1
    assert "devices:import" in err and "3 pending" in out
    assert secret not in out + err


def test_verify_with_a_list_only_token_problem_is_reported(tmp_path: Path, cloud: Cloud) -> None:
    from station.sim.console import SimToken

    db = tmp_path / "station.db"
    make_db(db, device_ids(2))
    cloud.console.add_token(SimToken("import-only", scopes=frozenset({"devices:import"})))
    code, out, err = run(
        ["sync", "--db", str(db), "--base-url", cloud.url, "--verify"], env={"PARTICLE_ACCESS_TOKEN": "import-only"}
    )
    assert code == 1
    assert "2 synced" in out and "devices:list" in err


def test_unreachable_cloud_gives_up_and_exits_1(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(3))
    cloud.console.inject(FaultKind.ERROR_STATUS, times=100)
    code, out, _ = run(
        ["sync", "--db", str(db), "--base-url", cloud.url, "--max-failures", "1"],
        env={"PARTICLE_ACCESS_TOKEN": TOKEN},
    )
    assert code == 1
    assert "gave up after 1 failed requests" in out and "3 pending" in out


def test_profile_cloud_section(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(4), product="acme-tracker")
    token_file = tmp_path / "tok"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    profile = tmp_path / "line1.toml"
    profile.write_text(
        'station_id = "line-1"\nbundle = "b.fwpkg"\nrequire_signature = false\n\n[cloud]\nproduct = "acme-tracker"\n'
        f'base_url = "{cloud.url}"\ntoken_file = "tok"\nbatch_size = 2\n'
    )
    code, out, err = run(["sync", "--db", str(db), "--profile", str(profile)], env={})
    assert code == 0, out + err
    assert "product acme-tracker: 0 pending, 4 synced" in out and "2 request(s)" in out
    profile.write_text('station_id = "x"\nbundle = "b"\nrequire_signature = false\n[cloud]\nproduct = "p"\nbatch = 2\n')
    code, _, err = run(["sync", "--db", str(db), "--profile", str(profile)], env={})
    assert code == 2 and "batch" in err


def test_missing_registry_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(["sync", "--db", str(tmp_path / "none.db"), "--dry-run"], env={})
    assert code == 2 and "no registry" in err


def test_kill_9_during_sync_then_resume(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    ids = device_ids(400)
    make_db(db, ids)
    cloud.console.latency = 0.15  # slow answers, so the kill lands mid-run
    env = {
        **os.environ,
        "PARTICLE_ACCESS_TOKEN": TOKEN,
        "BENCHFLASH_DB": str(db),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    station = "import sys; from station.cli import main; sys.argv[0] = 'station'; main()"
    command = [sys.executable, "-c", station, "sync", "--base-url", cloud.url, "--batch-size", "10"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while cloud.console.stats().import_requests < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Registry(db, create=False) as registry:
        counts = registry.outbox.counts(PRODUCT)
    assert 0 < counts[OutboxState.SYNCED] < 400 and counts[OutboxState.PENDING] > 0

    cloud.console.latency = 0.0
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 pending, 400 synced" in done.stdout
    with Registry(db, create=False) as registry:
        assert all(e.state is OutboxState.SYNCED for e in registry.outbox.entries())
    added = cloud.console.stats().added
    assert len(added) == 400 and set(added.values()) == {1}
    assert sorted(cloud.console.product_device_ids(PRODUCT)) == ids
    assert TOKEN not in done.stdout + done.stderr


def test_without_a_product_every_queued_product_is_synced(tmp_path: Path, cloud: Cloud) -> None:
    from station.sim.console_state import SimProduct

    cloud.console.state.add_product(SimProduct(77, "second-product"))
    db = tmp_path / "station.db"
    with Registry(db) as registry:
        bulk_enqueue(registry, device_ids(3), PRODUCT)
        bulk_enqueue(registry, device_ids(2, start=100), "second-product")
    code, out, err = run(["sync", "--db", str(db), "--base-url", cloud.url], env={"PARTICLE_ACCESS_TOKEN": TOKEN})
    assert code == 0, out + err
    assert f"product {PRODUCT}: 0 pending, 3 synced" in out
    assert "product second-product: 0 pending, 2 synced" in out
    assert cloud.console.product_device_ids("77") == device_ids(2, start=100)


def test_requeue_imports_a_device_again_once_it_is_unclaimed(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    outsider = f"{4096:024x}"
    cloud.console.state.claim_elsewhere([outsider])
    make_db(db, [*device_ids(3), outsider])
    base = ["sync", "--db", str(db), "--product", PRODUCT, "--base-url", cloud.url]
    env = {"PARTICLE_ACCESS_TOKEN": TOKEN}
    code, out, _ = run(base, env=env)
    assert code == 1 and "1 needs-attention" in out
    assert "once fixed, import them again: station sync --requeue ID" in out
    # The owner releases the device; the operator puts it back in the queue (case as the console shows it).
    cloud.console.state.claimed_elsewhere.discard(outsider)
    code, out, err = run([*base, "--requeue", outsider.upper(), "--json"], env=env)
    assert code == 0, out + err
    report = json.loads(out)
    assert report["requeued"] == [{"device_id": outsider, "product": PRODUCT, "was": "needs-attention"}]
    assert report["products"][0]["counts"]["synced"] == 4
    assert report["products"][0]["run"]["outcomes"] == {"updated": 1}
    assert outsider in cloud.console.product_device_ids(PRODUCT)


def test_requeue_of_a_device_the_product_lost_and_refusals(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(2))
    base = ["sync", "--db", str(db), "--base-url", cloud.url]
    env = {"PARTICLE_ACCESS_TOKEN": TOKEN}
    assert run(base, env=env)[0] == 0
    lost = device_ids(1)[0]
    with cloud.client() as client:
        client._request("DELETE", f"/v1/products/{PRODUCT}/devices/{lost}", scope="devices:remove")
    code, out, _ = run([*base, "--verify"], env=env)
    assert code == 1 and "import them again: station sync --requeue ID" in out
    code, out, _ = run([*base, "--verify", "--requeue", lost], env=env)
    assert code == 0, out
    assert f"requeued 1 device(s)\n    {lost}  product {PRODUCT}, was synced" in out
    assert "verify: product lists 2, 2 synced here: ok" in out
    # An ID the station never queued changes nothing and says which; --dry-run never writes.
    with Registry(db) as registry:
        before = registry.outbox.entries()
    code, _, err = run([*base, "--requeue", lost, "--requeue", "feedfacefeedfacefeedface"], env=env)
    assert code == 2 and "not in the sync queue: feedfacefeedfacefeedface" in err
    code, _, err = run([*base, "--requeue", lost, "--dry-run"], env=env)
    assert code == 2 and "--dry-run" in err
    with Registry(db) as registry:
        assert registry.outbox.entries() == before


def test_a_rejected_token_is_said_once_in_a_real_process(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(3))
    secret = "e" * 40
    env = {**os.environ, "PARTICLE_ACCESS_TOKEN": secret, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    station = "import sys; from station.cli import main; sys.argv[0] = 'station'; main()"
    done = subprocess.run(
        [sys.executable, "-c", station, "sync", "--db", str(db), "--base-url", cloud.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.startswith(f"product {PRODUCT}: 3 pending")
    # One line says what failed and how to fix it: not the log, the summary and the error each.
    assert (done.stdout + done.stderr).count("invalid_token") == 1, done.stdout + done.stderr
    assert (
        done.stderr.startswith("station: error: POST /v1/products/4242/devices: HTTP 401")
        and "devices:import" in done.stderr
    )
    assert secret not in done.stdout + done.stderr


@pytest.mark.slow
def test_station_run_imports_as_it_goes_and_a_run_without_token_leaves_them_for_sync(
    tmp_path: Path, cloud: Cloud
) -> None:
    from station.demo.sample_release import make_sample_release

    release = make_sample_release(tmp_path, target="argon", product_id=int(PRODUCT), product_version=3)
    profile = tmp_path / "line.toml"
    profile.write_text(
        f'station_id = "line-1"\nbundle = "{release.bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        f'operator = "ana"\n[cloud]\nproduct = "{PRODUCT}"\nbase_url = "{cloud.url}"\ntoken_env = "ACME_TOKEN"\n'
    )
    db = tmp_path / "station.db"
    env = {k: v for k, v in os.environ.items() if k != "ACME_TOKEN"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    station = [sys.executable, "-m", "station.cli"]
    run_args = [*station, "run", "--profile", str(profile), "--db", str(db), "--json", "--no-timing"]

    # The factory's uplink token is missing: the line still flashes and queues every PASS.
    offline = subprocess.run(
        [*run_args, "--simulate", "argon-dfu:2", "--duration", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert offline.returncode == 0, offline.stderr
    assert "cloud sync off" in offline.stderr and "ACME_TOKEN" in offline.stderr
    assert cloud.console.stats().import_requests == 0

    # With the token, the next run imports its boards while it runs, and the queue from before too.
    env["ACME_TOKEN"] = TOKEN
    online = subprocess.run(
        [*run_args, "--simulate", "argon-dfu:1", "--duration", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert online.returncode == 0, online.stderr
    events = [json.loads(line) for line in online.stdout.splitlines() if line.strip()]
    assert any(e["event"] == "sync" and e["what"] == "sync-batch" for e in events)
    assert TOKEN not in online.stdout + online.stderr
    assert cloud.console.product_device_ids(PRODUCT)
    # Whatever the run's end left queued (a slow machine), `station sync` settles; none goes twice.
    code, out, _ = run(["sync", "--db", str(db), "--profile", str(profile), "--verify"], env={"ACME_TOKEN": TOKEN})
    assert code == 0 and "0 pending, 3 synced" in out and "verify: product lists 3, 3 synced here: ok" in out
    added = cloud.console.stats().added
    assert len(added) == 3 and set(added.values()) == {1}


def test_json_failures_are_objects_too(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    make_db(db, device_ids(2))
    base = ["sync", "--db", str(db), "--base-url", cloud.url, "--json"]
    code, out, _ = run(base, env={"PARTICLE_ACCESS_TOKEN": "f" * 40})
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["products"][0]["counts"]["pending"] == 2
    assert report["error"]["reason"] == "cloud" and "devices:import" in report["error"]["hint"]
    code, out, _ = run(base, env={})
    assert code == 2 and json.loads(out)["error"]["message"].startswith("no access token")
    code, out, _ = run([*base, "--requeue", "feedfacefeedfacefeedface"], env={})
    assert code == 2 and "not in the sync queue" in json.loads(out)["error"]["message"]
