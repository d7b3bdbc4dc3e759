"""Export records: which submissions and replies each numbered bundle of a desk carried."""

from __future__ import annotations

import json

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app.protocol.utcday import today

from .desks import Desk
from .errors import Conflict
from .models import DeskRow, ExportRow


def next_sequence(engine: Engine, desk: Desk) -> int:
    """The number the desk's next export bundle carries (1, 2, …)."""
    with engine.connect() as conn:
        last = conn.execute(
            select(func.max(ExportRow.sequence)).where(ExportRow.desk_id == desk.id)
        ).scalar_one()
    return int(last or 0) + 1


def record_export(
    engine: Engine,
    desk: Desk,
    submission_ids: list[str],
    sequence: int | None,
    only_new: bool,
    reply_ids: list[str],
) -> int:
    """See ``Store.record_export``."""
    conflict = (
        f"another export of desk {desk.name} ran at the same time: nothing recorded, "
        "run guwah export again"
    )
    try:
        with engine.begin() as conn:
            conn.execute(select(DeskRow.id).where(DeskRow.id == desk.id).with_for_update())
            last = conn.execute(
                select(func.max(ExportRow.sequence)).where(ExportRow.desk_id == desk.id)
            ).scalar_one()
            next_number = (last or 0) + 1
            if sequence is not None and sequence != next_number:
                raise Conflict(conflict)
            # the caller chose its submissions before taking the lock: if another export
            # recorded any of them since, this bundle would hand them out twice
            # (``only_new``: a --since-last export, which must not repeat any of them)
            wanted = set(submission_ids) if only_new else set()
            if wanted:
                earlier = conn.execute(
                    select(ExportRow.submission_ids).where(ExportRow.desk_id == desk.id)
                )
                if any(wanted & set(json.loads(blob)) for (blob,) in earlier):
                    raise Conflict(conflict)
            conn.execute(
                insert(ExportRow).values(
                    desk_id=desk.id,
                    sequence=next_number,
                    day=today(),
                    submission_ids=json.dumps(sorted(submission_ids)),
                    reply_ids=json.dumps(sorted(reply_ids)),
                )
            )
    except IntegrityError:
        raise Conflict(conflict) from None
    return next_number


def exported(engine: Engine, desk: Desk, column: str) -> set[str]:
    """Ids every earlier export of the desk carried: ``column`` is "submission_ids" or
    "reply_ids"."""
    ids: set[str] = set()
    with engine.connect() as conn:
        for (blob,) in conn.execute(
            select(getattr(ExportRow, column)).where(ExportRow.desk_id == desk.id)
        ):
            ids.update(json.loads(blob))
    return ids
