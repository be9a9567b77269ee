"""How one catalog transaction applies a batch (``catalog.writes.plan_writes``): pure."""

from __future__ import annotations

from dicomweb_core.catalog.writes import CurrentRow, plan_writes
from dicomweb_core.models import InstanceRecord


def rec(sop: str, key: str, digest: str = "", study: str = "1", series: str = "1.1") -> InstanceRecord:
    return InstanceRecord(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        object_key=key,
        size=1,
        metadata=b"{}",
        digest=digest,
    )


def test_new_instances_are_stored_and_nothing_is_garbage() -> None:
    plan = plan_writes([rec("9.1", "k1"), rec("9.2", "k2")], {}, "replace")
    assert plan.decisions == ["stored", "stored"] and plan.apply == [0, 1]
    assert plan.garbage == [] and plan.previous == [None, None] and plan.replaced == []


def test_replace_supersedes_the_catalogued_key_and_recounts_the_old_home() -> None:
    current = {"9.1": CurrentRow("0", "0.1", "old", "d-old")}
    plan = plan_writes([rec("9.1", "new", "d-new")], current, "replace")
    assert plan.decisions == ["stored"] and plan.garbage == ["old"] and plan.previous == ["old"]
    assert plan.replaced == ["9.1"]
    assert set(plan.studies) == {"0", "1"} and set(plan.series) == {"0.1", "1.1"}


def test_an_identical_resend_keeps_the_row_and_drops_the_new_copy_under_any_policy() -> None:
    current = {"9.1": CurrentRow("1", "1.1", "old", "same")}
    for policy in ("replace", "keep-first", "reject"):
        plan = plan_writes([rec("9.1", "new", "same")], current, policy)  # type: ignore[arg-type]
        assert plan.decisions == ["identical"] and plan.garbage == ["new"] and plan.apply == []


def test_keep_first_and_reject_leave_the_catalogued_instance() -> None:
    current = {"9.1": CurrentRow("1", "1.1", "old", "a")}
    kept = plan_writes([rec("9.1", "new", "b")], current, "keep-first")
    assert kept.decisions == ["kept"] and kept.garbage == ["new"] and kept.apply == []
    rejected = plan_writes([rec("9.1", "new", "b")], current, "reject")
    assert rejected.decisions == ["rejected"] and rejected.garbage == ["new"] and rejected.apply == []


def test_one_uid_twice_in_a_batch_writes_the_last_and_collects_the_first() -> None:
    plan = plan_writes([rec("9.1", "k1", "a"), rec("9.1", "k2", "b")], {}, "replace")
    assert plan.decisions == ["stored", "stored"] and plan.apply == [1] and plan.garbage == ["k1"]


def test_the_same_key_again_rewrites_the_row_without_garbage() -> None:
    current = {"9.1": CurrentRow("1", "1.1", "k", "")}
    plan = plan_writes([rec("9.1", "k")], current, "reject")
    assert plan.decisions == ["stored"] and plan.garbage == [] and plan.replaced == ["9.1"]
