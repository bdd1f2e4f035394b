"""A parked saga redriven over weeks: its records never expire under it, and past the deadline
the redrive refuses it instead of guessing.

The clock moves forward (``ShiftedWallClock``: handlers' ``time.time`` and Powertools' expiry
clock) and DynamoDB's TTL sweep runs between redrive rounds, deleting what AWS would have
deleted by then. Each round is what the runbook expects of an operator who redrives before the
cause is fixed: "Start DLQ redrive", three failed deliveries, back in the DLQ. SQS gives every
redriven message a fresh retention, so only the kit can keep the saga's records alive.
"""

from __future__ import annotations

from typing import Any

import pytest

from demo.order_demo import OrderParticipants, OrderTables, order_input
from saga_kit.cli.dlq import list_parked, redrive
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution
from saga_kit.local_cloud.wall_clock import ShiftedWallClock

SKU, CUSTOMER, PRICE = "sku-weeks", "customer-weeks", 1999
#: The charge is made, then the handler crashes: the saga compensates, and the refund keeps
#: failing (a fault rule in the fault table, until the "operator" removes it).
CRASH_AFTER_CHARGE = [{"step": "charge_payment", "kind": "crash_after_effect"}]
REFUND_FAILS = [{"step": "charge_payment", "phase": "compensation", "kind": "transient_error"}]
ROUND_DAYS = 12  # under SQS's 14-day retention: a message is never dropped between rounds


@pytest.fixture(scope="module")
def weeks(reserve_and_charge: Any) -> dict[str, Any]:
    cloud = reserve_and_charge
    outputs = cloud.outputs
    p = OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(outputs))
    p.seed_stock(10, sku=SKU)
    p.open_account(CUSTOMER, 100_000)
    sfn, sqs = cloud.client("stepfunctions"), cloud.client("sqs")
    sagas = {}
    for name in ("fixed_in_time", "past_deadline"):
        saga_id, arn = start_saga(sfn, cloud.saga_outputs()["StateMachineArn"], order_input(
            faults=CRASH_AFTER_CHARGE, sku=SKU, customer=CUSTOMER) | {"fault_table": True})
        p.set_fault_rules(saga_id, REFUND_FAILS)
        sagas[name] = saga_id
        wait_for_execution(sfn, arn, timeout=60)
        assert outcome(sfn, arn).status == "parked"
    cloud.pump_event_sources()  # day 0: three deliveries fail, the messages reach the DLQ
    outputs = cloud.saga_outputs()
    dlq_url = outputs["CompensationDeadLetterQueueUrl"]
    dlq_arn = outputs["CompensationDeadLetterQueueArn"]
    parked_effects = {name: p.saga_effects(saga_id) for name, saga_id in sagas.items()}
    swept: dict[int, dict[str, int]] = {}
    statuses: dict[int, dict[str, str]] = {}
    emf: list[dict[str, Any]] = []
    clock = ShiftedWallClock()
    with clock.installed():
        for day in range(ROUND_DAYS, 97, ROUND_DAYS):  # days 12, 24, ... 96
            clock.advance(days=ROUND_DAYS)
            swept[day] = cloud.sweep_expired_items()
            if day == 48:  # the cause of the first saga is fixed, six weeks after it parked
                p.set_fault_rules(sagas["fixed_in_time"], None)
            if day == 96:  # the second one's, after the 90-day deadline
                p.set_fault_rules(sagas["past_deadline"], None)
            mark = len(cloud.metrics.documents())
            redrive(sqs, dlq_arn)
            cloud.pump_event_sources()
            emf.extend(cloud.metrics.documents()[mark:])
            statuses[day] = {name: _status(cloud, saga_id) for name, saga_id in sagas.items()}
        in_dlq = {v.saga_id: v for v in list_parked(sqs, dlq_url)}
        swept[97] = cloud.sweep_expired_items(clock.time() + 86400)
    return {"p": p, "sagas": sagas, "statuses": statuses, "swept": swept, "emf": emf,
            "in_dlq": in_dlq, "parked_effects": parked_effects, "cloud": cloud}


def _status(cloud: Any, saga_id: str) -> dict[str, Any]:
    """The store item's string attributes ({} once a finished saga's item has expired)."""
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.saga_outputs()["StoreTableName"], ConsistentRead=True,
        Key={"saga_type": {"S": "reserve_and_charge"}, "saga_id": {"S": saga_id}}).get("Item", {})
    return {k: v.get("S") for k, v in item.items() if "S" in v}


def test_the_sweep_really_expires_records(weeks: dict[str, Any]) -> None:
    # Without it the test could not fail: moto keeps everything forever. The finished saga's
    # barrier items (30 days after its compensation) and store item (90 days) do expire.
    swept = {day: sum(tables.values()) for day, tables in weeks["swept"].items()}
    assert swept[84] >= 2 and swept[96] >= 1


def test_redriven_for_weeks_then_fixed_every_effect_is_undone_exactly_once(
    weeks: dict[str, Any],
) -> None:
    saga_id = weeks["sagas"]["fixed_in_time"]
    assert weeks["parked_effects"]["fixed_in_time"] == {
        "reserved": 1, "charge": "charged", "net_charge_cents": PRICE, "shipment": None,
        "confirmed": False}
    for day in (12, 24, 36):
        assert weeks["statuses"][day]["fixed_in_time"]["status"] == "parked"
    assert weeks["statuses"][48]["fixed_in_time"]["status"] == "compensated"
    assert weeks["p"].saga_effects(saga_id) == {
        "reserved": 0, "charge": "refunded", "net_charge_cents": 0, "shipment": None,
        "confirmed": False}
    # Undone once each: the refund on day 48 and the release after it, never skipped as
    # "never took effect" because a barrier item had expired, never run twice.
    assert weeks["p"].compensation_runs(saga_id) == {"charge_payment": 1, "reserve_inventory": 1}


def test_past_the_deadline_the_redrive_refuses_and_the_saga_stays_parked(
    weeks: dict[str, Any],
) -> None:
    saga_id = weeks["sagas"]["past_deadline"]
    for day in range(12, 85, 12):
        assert "parked_past_deadline_at" not in weeks["statuses"][day]["past_deadline"]
    stored = weeks["statuses"][96]["past_deadline"]
    assert stored["status"] == "parked" and stored["parked_past_deadline_at"]
    # Nothing was guessed: the cause was fixed, but the kit undid nothing past the deadline.
    assert weeks["p"].saga_effects(saga_id) == weeks["parked_effects"]["past_deadline"]
    assert weeks["p"].compensation_runs(saga_id) == {}
    # The message is kept in the DLQ for the operator, and it says when the saga was parked.
    parked = weeks["in_dlq"][saga_id]
    assert parked.failed_compensation == "charge_payment"
    assert parked.parked_age_seconds > 95 * 86400
    # Alarmed: the redrive emitted the metric the ParkedPastDeadline alarm watches.
    refusals = [m for m in weeks["emf"] if m.get("ParkedPastDeadline")]
    assert refusals and all(m["SagaType"] == "reserve_and_charge" for m in refusals)


def test_a_refused_saga_keeps_its_records(weeks: dict[str, Any]) -> None:
    # Every delivery refreshes them, the refused ones too: an operator finishing by hand, or a
    # raised deadline, still finds what the compensations need.
    cloud = weeks["cloud"]
    saga_id = weeks["sagas"]["past_deadline"]
    barrier = cloud.client("dynamodb").get_item(
        TableName=cloud.saga_outputs()["BarrierTableName"], ConsistentRead=True,
        Key={"saga": {"S": f"reserve_and_charge#{saga_id}"}, "step": {"S": "reserve_inventory"}})
    assert "action_started_at" in barrier["Item"]
