"""No silent downgrade: version 2 after version 3 is refused for an operator, allowed once for a lead
(and recorded), and a security version is a floor nobody can go below."""

from __future__ import annotations

import json
from pathlib import Path

from station.store import AttemptResult, Registry
from tests.station.trace.conftest import events, profile, release, run_line, station


def _passes(db: Path) -> list[int | None]:
    with Registry(db, create=False) as registry:
        return [a.context.product_version for a in registry.history() if a.result is AttemptResult.PASS]


def test_version_2_after_3_is_refused_for_an_operator_allowed_once_for_a_lead_and_recorded(
    tmp_path: Path, staffed: Path
) -> None:
    db = staffed
    v3 = profile(tmp_path, release(tmp_path, 3), name="v3.toml")
    first = run_line(v3, db, "lena", "2222")  # a lead sets the line up
    assert first.exit_code == 0, first.output
    assert _passes(db) == [3]

    v2 = profile(tmp_path, release(tmp_path, 2), name="v2.toml")
    refused = run_line(v2, db, "otto", "1111")
    assert refused.exit_code == 1
    assert "bundle version 2 of product 1234 is lower than version 3 this station has flashed" in refused.output
    assert not events(refused.output)  # refused before any board was touched
    assert _passes(db) == [3]

    not_a_lead = run_line(v2, db, "otto", "1111", "--allow-downgrade")
    assert not_a_lead.exit_code == 2
    assert "otto (operator) may not allow a downgrade: that needs the lead role" in not_a_lead.output

    allowed = run_line(v2, db, "lena", "2222", "--allow-downgrade")
    assert allowed.exit_code == 0, allowed.output
    assert _passes(db) == [3, 2]

    # The allowance was for that one run: the next run of version 2 is refused again.
    again = run_line(v2, db, "lena", "2222")
    assert again.exit_code == 1 and "lower than version 3" in again.output

    listed = json.loads(station("audit", "--db", str(db), "--action", "allow-downgrade", "--json").output)
    assert len(listed) == 1
    entry = listed[0]
    assert (entry["actor"], entry["role"], entry["station_id"]) == ("lena", "lead", "line-1")
    assert entry["before"] == {"newest_flashed": 3, "min_version": None}
    assert entry["after"] == {"version": 2, "for": "this run"}
    starts = json.loads(station("audit", "--db", str(db), "--action", "start", "--json").output)
    assert starts[-1]["after"]["downgrade_allowed_by"] == "lena"
    assert station("audit", "verify", "--db", str(db)).exit_code == 0


def test_profile_min_version_is_a_floor_too(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    p = profile(tmp_path, release(tmp_path, 4), extra="min_version = 5\n")
    refused = run_line(p, db, "ana", None)
    assert refused.exit_code == 1
    assert "lower than the profile's min_version 5" in refused.output


def test_security_version_is_never_gone_below_override_or_not(tmp_path: Path, staffed: Path) -> None:
    db = staffed
    secure = profile(tmp_path, release(tmp_path, 3, security_version=2), name="s2.toml")
    assert run_line(secure, db, "lena", "2222").exit_code == 0
    # Version 4 is newer, but it was released with security version 1 (or none): refused even for a lead.
    for sv in (1, None):
        weaker = profile(tmp_path, release(tmp_path, 4, security_version=sv), name=f"s{sv}.toml")
        result = run_line(weaker, db, "lena", "2222", "--allow-downgrade")
        assert result.exit_code == 1
        assert "this station has accepted security version 2 and never goes below it" in result.output
    stronger = profile(tmp_path, release(tmp_path, 4, security_version=2), name="s2b.toml")
    assert run_line(stronger, db, "lena", "2222").exit_code == 0
