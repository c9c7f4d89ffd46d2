"""``station demo`` (what `make demo` runs): a whole shift on simulated boards, then stats and export."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Keep the demo's files here (default: temp).")
@click.option("--json", "as_json", is_flag=True, help="JSON events instead of the dashboard.")
@click.option("--no-timing", is_flag=True, help="Simulators as fast as they can go (no modelled link/flash time).")
def demo(out_dir: str | None, as_json: bool, no_timing: bool) -> None:
    """Build a sample bundle, run a line on simulated boards, sync to a simulated console, report."""
    from station.cli.registry_cmd import stats_text
    from station.demo.scenario import run_demo
    from station.store import Registry

    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="benchflash-demo-"))
    use_dashboard = not as_json and sys.stdout.isatty()
    if use_dashboard:
        result = _with_dashboard(folder, timing=not no_timing)
    else:
        from station.ui.jsonl import JsonLinesSink

        result = run_demo(folder, JsonLinesSink(sys.stdout), timing=not no_timing)
    out = sys.stderr if not use_dashboard else sys.stdout
    print(f"\ndemo finished in {result.seconds:.1f} s; files in {folder}", file=out)
    with Registry(result.registry, create=False) as registry:
        for line in stats_text(registry.stats(), str(result.registry)):
            print(line, file=out)
    print(f"cloud: {result.synced} device(s) imported into the simulated console, {result.pending} pending", file=out)
    for line in result.rollout:
        print(f"rollout: {line}", file=out)
    ids = result.export_file.read_text().split()
    print(f"import file {result.export_file} ({len(ids)} device IDs, one per line):", file=out)
    for device_id in ids:
        print(f"  {device_id}", file=out)


def _with_dashboard(folder: Path, *, timing: bool):  # type: ignore[no-untyped-def]
    import threading

    from station.demo.scenario import DemoResult, run_demo
    from station.ui.dashboard import Dashboard, DashboardInfo

    app = Dashboard(DashboardInfo(product="acme-blinky (4242)", version="3", bundle="demo", station_id="demo-line"))
    outcome: list[DemoResult | BaseException] = []

    def shift() -> None:
        try:
            outcome.append(run_demo(folder, app.sink, timing=timing))
        except BaseException as exc:  # shown after the screen closes
            outcome.append(exc)
        finally:
            app.call_from_thread(app.exit)

    worker = threading.Thread(target=shift, name="demo", daemon=True)
    app.call_later(worker.start)
    app.run()
    worker.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]
