"""Operators and roles as a user meets them: the first admin, PINs hashed with Argon2 and never on the
command line, clear refusals naming the role an action needs, and every operator change audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from station.trace.pins import hash_pin, pin_matches
from tests.station.trace.conftest import profile, release, run_line, station


def test_pins_are_argon2_hashes_and_only_the_right_pin_matches() -> None:
    hashed = hash_pin("4711")
    assert hashed.startswith("$argon2id$") and "4711" not in hashed
    assert pin_matches(hashed, "4711") and not pin_matches(hashed, "4712")
    assert not pin_matches("not a hash", "4711")


def test_the_first_operator_must_be_an_admin(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    result = station("operators", "add", "otto", "--db", str(db), env={"BENCHFLASH_NEW_PIN": "1111"})
    assert result.exit_code == 2 and "the first one must be an admin" in result.output


def test_roles_refuse_naming_the_role_needed_and_changes_are_audited(tmp_path: Path, staffed: Path) -> None:
    db = staffed
    listed = json.loads(station("operators", "list", "--db", str(db), "--json").output)
    assert [(o["name"], o["role"]) for o in listed] == [("lena", "lead"), ("otto", "operator"), ("root", "admin")]
    assert "pin" not in json.dumps(listed).lower()
    conn = sqlite3.connect(db)
    assert all(h.startswith("$argon2id$") for (h,) in conn.execute("SELECT pin_hash FROM operators"))
    conn.close()

    by_lead = station(
        "operators",
        "add",
        "eve",
        "--db",
        str(db),
        "--as",
        "lena",
        env={"BENCHFLASH_PIN": "2222", "BENCHFLASH_NEW_PIN": "3333"},
    )
    assert by_lead.exit_code == 2
    assert "lena (lead) may not manage operators: that needs the admin role" in by_lead.output

    wrong_pin = run_line(profile(tmp_path, release(tmp_path, 3)), db, "otto", "0000")
    assert wrong_pin.exit_code == 2 and "sign-in refused for 'otto'" in wrong_pin.output
    nobody = run_line(profile(tmp_path, release(tmp_path, 3)), db, "mallory", "1111")
    assert nobody.exit_code == 2 and "sign-in refused for 'mallory'" in nobody.output

    lock = station(
        "console", "lock", "0123456789abcdef01234567", "3", "--product", "1234", "--operator", "otto",
        "--audit-db", str(db), env={"BENCHFLASH_PIN": "1111", "PARTICLE_ACCESS_TOKEN": "x" * 40},
    )  # fmt: skip
    assert lock.exit_code == 2
    assert "otto (operator) may not lock a device: that needs the lead role" in lock.output

    disabled = station("operators", "disable", "otto", "--db", str(db), "--as", "root", env={"BENCHFLASH_PIN": "9999"})
    assert disabled.exit_code == 0
    after = run_line(profile(tmp_path, release(tmp_path, 3)), db, "otto", "1111")
    assert after.exit_code == 2 and "sign-in refused" in after.output

    entries = json.loads(station("audit", "--db", str(db), "--json").output)
    changes = [(e["action"], e["subject"], e["actor"]) for e in entries]
    assert changes == [
        ("operator-add", "root", "root"),
        ("operator-add", "lena", "root"),
        ("operator-add", "otto", "root"),
        ("operator-disable", "otto", "root"),
    ]
    assert entries[-1]["before"] == {"role": "operator", "disabled": False}


def test_the_pin_comes_from_a_private_file_or_the_environment_never_the_command_line(
    tmp_path: Path, staffed: Path
) -> None:
    db = staffed
    line = profile(tmp_path, release(tmp_path, 3))
    pin_file = tmp_path / "otto.pin"
    pin_file.write_text("1111\n")
    pin_file.chmod(0o644)
    loose = run_line(line, db, "otto", None, "--pin-file", str(pin_file))
    assert loose.exit_code == 2 and "readable by group or others" in loose.output
    pin_file.chmod(0o600)
    # A lead sets the bundle up first (a new bundle is a profile change, a lead's right).
    assert run_line(line, db, "lena", "2222").exit_code == 0
    ok = run_line(line, db, "otto", None, "--pin-file", str(pin_file))
    assert ok.exit_code == 0, ok.output
    missing = run_line(line, db, "otto", None)
    assert missing.exit_code == 2 and "needs a PIN" in missing.output and "--pin-file" in missing.output
    assert "--pin " not in station("run", "--help").output


def test_a_new_bundle_is_a_profile_change_only_a_lead_may_make(tmp_path: Path, staffed: Path) -> None:
    db = staffed
    assert run_line(profile(tmp_path, release(tmp_path, 3), name="a.toml"), db, "otto", "1111").exit_code == 0
    changed = run_line(profile(tmp_path, release(tmp_path, 4), name="b.toml"), db, "otto", "1111")
    assert changed.exit_code == 2 and "may not change the profile or bundle: that needs the lead role" in changed.output
    assert run_line(profile(tmp_path, release(tmp_path, 4), name="b.toml"), db, "lena", "2222").exit_code == 0
    entries = json.loads(station("audit", "--db", str(db), "--action", "profile-change", "--json").output)
    assert len(entries) == 1 and entries[0]["actor"] == "lena"
    assert entries[0]["before"]["product_version"] == 3 and entries[0]["after"]["product_version"] == 4
