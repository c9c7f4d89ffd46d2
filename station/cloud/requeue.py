"""Put devices back in the queue once what stopped them is fixed (a device unclaimed from a foreign
account, a protected device released, a synced device the product no longer lists): ``station sync
--requeue``. Only the registry changes; the next drain imports them again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from station.cloud.errors import CloudConfigError
from station.store.outbox import Outbox, OutboxEntry, OutboxState


@dataclass(frozen=True)
class Requeued:
    """What ``requeue`` did: each entry as it was before, and the IDs already pending (left as they are)."""

    requeued: tuple[OutboxEntry, ...]
    already_pending: tuple[OutboxEntry, ...]


def requeue(outbox: Outbox, device_ids: Sequence[str], *, product: str | None = None) -> Requeued:
    """Make every queued row of ``device_ids`` (for ``product``, or any product) pending again.

    IDs are matched trimmed and case-insensitively, as the cloud compares them. An ID the outbox
    does not hold is an error naming it, and then nothing is changed.
    """
    wanted = {d.strip().lower(): d for d in device_ids if d.strip()}
    if not wanted:
        raise CloudConfigError("--requeue: no device ID given")
    found: dict[str, list[OutboxEntry]] = {}
    for entry in outbox.entries(product=product):
        key = entry.device_id.strip().lower()
        if key in wanted:
            found.setdefault(key, []).append(entry)
    unknown = [given for key, given in wanted.items() if key not in found]
    if unknown:
        where = f" for product {product}" if product is not None else ""
        raise CloudConfigError(
            f"--requeue: not in the sync queue{where}: {', '.join(unknown[:10])}"
            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""),
            hint="only devices the station recorded can be requeued; check the IDs (station history --device ID)",
        )
    entries = [e for group in found.values() for e in group]
    moving = [e for e in entries if e.state is not OutboxState.PENDING]
    by_product: dict[str, dict[str, tuple[OutboxState, str | None]]] = {}
    for entry in moving:
        by_product.setdefault(entry.product, {})[entry.device_id] = (OutboxState.PENDING, None)
    for name, changes in by_product.items():
        outbox.resolve(name, changes)
    return Requeued(
        requeued=tuple(moving),
        already_pending=tuple(e for e in entries if e.state is OutboxState.PENDING),
    )
