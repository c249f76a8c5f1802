"""The audit log's storage, the same contract on SQLite and PostgreSQL: append-only, newest first, paged."""

from __future__ import annotations

from server.audit import AuditLog


def test_audit_log_is_shared_append_only_and_paged(stores) -> None:
    clock = iter(range(1_000, 2_000))
    log = AuditLog(stores.meta, clock=lambda: float(next(clock)))
    first = log.record(
        "publisher:ml-team", "publish", {"name": "sq", "version": "1.0.0", "hardware_ids": ["a"]}
    )
    log.record("publisher:ops", "campaign.create", {"campaign_id": "c-1"})
    log.record("publisher:ml-team", "campaign.abort", {"campaign_id": "c-1", "reason": "bad"})
    assert first.seq > 0
    # Another replica over the same database sees the same log and appends to it.
    other = AuditLog(stores.open_another())
    other.record("publisher:ops", "keys.rotate", {"role": "root", "version": 2})
    entries = log.list(limit=10)
    assert [e.action for e in entries] == [
        "keys.rotate",
        "campaign.abort",
        "campaign.create",
        "publish",
    ]
    assert (
        entries[-1].args == {"name": "sq", "version": "1.0.0", "hardware_ids": ["a"]}
        and entries[-1].at == 1000.0
    )
    assert [e.action for e in log.list(actor="publisher:ops")] == ["keys.rotate", "campaign.create"]
    assert [e.action for e in log.list(action="publish")] == ["publish"]
    page = log.list(limit=2)
    assert [e.action for e in log.list(limit=2, before_seq=page[-1].seq)] == [
        "campaign.create",
        "publish",
    ]
    assert not [
        m for m in dir(stores.meta) if "audit" in m and m not in ("append_audit", "list_audit")
    ]
