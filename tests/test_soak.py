"""Nothing is lost: 500 sagas with random faults, compensation faults and duplicates.

Every saga ends completed, compensated, or parked in the DLQ with its full context; the
participants' books balance (stock and money conserved) before and after the DLQ is redriven.
The figures are printed at the end of the test.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from demo.order_demo import MERCHANT, OrderParticipants, order_input
from saga_kit.cli.dlq import list_parked, peek, redrive
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution

SAGAS = 500
WAVE = 25
SEED = 20261125
SKU_SOAK, CUSTOMER_SOAK = "sku-soak", "customer-soak"
STOCK, BALANCE, PRICE = 10_000, 100_000_000, 1999
UNDOABLE = ["reserve_inventory", "charge_payment", "create_shipment"]


def plan(rng: random.Random) -> list[dict[str, Any]]:
    """A random fault plan for one saga."""
    roll = rng.random()
    step = rng.choice(UNDOABLE)
    if roll < 0.35:
        return []
    if roll < 0.50:
        return [{"step": step, "kind": "business_error"}]
    if roll < 0.60:
        return [{"step": rng.choice([*UNDOABLE, "send_confirmation"]), "kind": "transient_error",
                 "times": rng.randint(1, 2)}]
    if roll < 0.67:
        return [{"step": step, "kind": "crash_after_effect"}]
    # A compensation that fails: within the state machine's retries (1-5), within the queue's
    # deliveries (6-8), or long enough to reach the DLQ (9-11).
    times = rng.choice([rng.randint(1, 5), rng.randint(6, 8), rng.randint(9, 11)])
    undo = rng.choice(UNDOABLE)
    return [{"step": "create_shipment", "kind": "business_error"},
            {"step": undo, "phase": "compensation", "kind": "transient_error", "times": times}]


@pytest.fixture(scope="module")
def soak(cloud: Any, participants: OrderParticipants) -> dict[str, Any]:
    rng = random.Random(SEED)
    participants.seed_stock(STOCK, sku=SKU_SOAK)
    participants.open_account(CUSTOMER_SOAK, BALANCE)
    sfn, sqs = cloud.client("stepfunctions"), cloud.client("sqs")
    machine = cloud.saga_outputs()["StateMachineArn"]
    money_before = participants.books()["money_total"]
    merchant_before = participants.books()["balances"].get(MERCHANT, 0)
    sagas: dict[str, dict[str, Any]] = {}
    duplicate_starts = 0
    for wave in range(0, SAGAS, WAVE):
        started = []
        for _ in range(min(WAVE, SAGAS - wave)):
            body = order_input(faults=plan(rng), sku=SKU_SOAK, customer=CUSTOMER_SOAK)
            saga_id, arn = start_saga(sfn, machine, body)
            sagas[saga_id] = {"arn": arn}
            started.append((saga_id, arn))
            if rng.random() < 0.1:  # a client retry: the same saga started again
                # Step Functions answers a running execution's own name and input with that
                # execution, and refuses anything else under the name: never a second run.
                try:
                    _, again = start_saga(sfn, machine, body)
                    assert again == arn
                except ClientError as error:
                    assert error.response["Error"]["Code"] == "ExecutionAlreadyExists"
                duplicate_starts += 1
        for saga_id, arn in started:
            wait_for_execution(sfn, arn, timeout=120)
            sagas[saga_id]["outcome"] = outcome(sfn, arn)
    cloud.pump_event_sources()  # the redrive Lambda drains the compensation queue
    in_dlq = {p.saga_id: p for p in list_parked(sqs, cloud.saga_outputs()["CompensationDeadLetterQueueUrl"])}
    store = cloud.client("dynamodb")

    def stored_status(saga_id: str) -> str | None:
        item = store.get_item(TableName=cloud.saga_outputs()["StoreTableName"], ConsistentRead=True,
                              Key={"saga_type": {"S": "order_fulfillment"},
                                   "saga_id": {"S": saga_id}}).get("Item")
        return item["status"]["S"] if item else None

    for saga_id, saga in sagas.items():
        status = saga["outcome"].status
        if status == "parked":
            # A duplicated message may sit in the DLQ for a saga another copy already finished:
            # the store says which.
            recorded = stored_status(saga_id)
            status = "parked_in_dlq" if recorded == "parked" else f"{recorded}_by_redrive"
        saga["final"] = status
        saga["effects"] = participants.saga_effects(saga_id)
    books = participants.books()
    raw_parked = [json.loads(m["Body"])
                  for m in peek(sqs, cloud.saga_outputs()["CompensationDeadLetterQueueUrl"])]
    # Duplicate deliveries: copies of parked messages arrive alongside the DLQ redrive.
    dlq_url = cloud.saga_outputs()["CompensationDeadLetterQueueUrl"]
    copies = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10,
                                 VisibilityTimeout=0).get("Messages", [])
    for message in copies:
        sqs.send_message(QueueUrl=cloud.saga_outputs()["CompensationQueueUrl"], MessageBody=message["Body"])
    # The operator redrives the DLQ until it is empty (a fault may outlast one round).
    rounds = 0
    while list_parked(sqs, dlq_url) and rounds < 3:
        redrive(sqs, cloud.saga_outputs()["CompensationDeadLetterQueueArn"])
        cloud.pump_event_sources()
        rounds += 1
    after_redrive = {saga_id: stored_status(saga_id) for saga_id in in_dlq if saga_id in sagas}
    return {"sagas": sagas, "books": books, "books_after": participants.books(),
            "in_dlq": in_dlq, "after_redrive": after_redrive,
            "raw_parked": raw_parked, "duplicate_starts": duplicate_starts,
            "duplicate_deliveries": len(copies),
            "redrive_rounds": rounds, "money_before": money_before,
            "merchant_before": merchant_before, "participants": participants}


FORWARD = {"reserved": 1, "charge": "charged", "net_charge_cents": PRICE, "shipment": "created"}


def test_every_saga_is_completed_compensated_or_parked_with_context(
    soak: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    finals = Counter(s["final"] for s in soak["sagas"].values())
    with capsys.disabled():
        print(f"\nsoak: {SAGAS} sagas {dict(sorted(finals.items()))}, "
              f"{soak['duplicate_starts']} duplicate starts (no second execution), "
              f"{soak['duplicate_deliveries']} duplicate deliveries, {len(soak['in_dlq'])} parked "
              f"in the DLQ then redriven in {soak['redrive_rounds']} round(s)")
    assert len(soak["sagas"]) == SAGAS
    assert set(finals) <= {"completed", "compensated", "compensated_by_redrive", "parked_in_dlq"}
    assert finals["completed"] and finals["compensated"] and finals["compensated_by_redrive"]
    assert finals["parked_in_dlq"]
    leaks = {saga_id: (s["final"], s["effects"]) for saga_id, s in soak["sagas"].items()
             if s["final"].startswith("compensated") and s["effects"]["reserved"]}
    assert not leaks
    for saga_id, saga in soak["sagas"].items():
        effects = saga["effects"]
        if saga["final"] == "completed":
            assert effects == {**FORWARD, "confirmed": True}, saga_id
        elif saga["final"].startswith("compensated"):
            assert (effects["reserved"], effects["net_charge_cents"]) == (0, 0), saga_id
            assert effects["shipment"] in (None, "cancelled") and not effects["confirmed"]
        else:  # parked: full context, and exactly the pending compensations left undone
            parked = soak["in_dlq"][saga_id]
            assert saga["outcome"].cause["failed_compensation"] == parked.failed_compensation
            assert parked.failed_compensation and parked.error == "TransientStepError"
            remaining = {parked.failed_compensation, *parked.pending_compensations}
            assert (effects["reserved"] == 1) == ("reserve_inventory" in remaining)
            assert (effects["charge"] == "charged") == ("charge_payment" in remaining)


def test_books_balance_before_and_after_the_dlq_redrive(soak: dict[str, Any]) -> None:
    completed = sum(1 for s in soak["sagas"].values() if s["final"] == "completed")
    reserved_by_soak = sum(s["effects"]["reserved"] for s in soak["sagas"].values())
    # Before the redrive: every unit off the shelf is held by one of these sagas' reservations.
    assert soak["books"]["stock"][SKU_SOAK] + reserved_by_soak == STOCK
    for books in (soak["books"], soak["books_after"]):
        assert books["money_total"] == soak["money_before"]
    after = soak["books_after"]
    # After the redrive, only completed sagas hold stock and money.
    assert after["stock"][SKU_SOAK] == STOCK - completed
    assert after["balances"][CUSTOMER_SOAK] == BALANCE - PRICE * completed
    assert set(soak["after_redrive"].values()) == {"compensated"}


def test_parked_messages_carry_the_state_to_finish(soak: dict[str, Any]) -> None:
    assert soak["raw_parked"]
    order = ["create_shipment", "charge_payment", "reserve_inventory"]
    for body in soak["raw_parked"]:
        saga = soak["sagas"][body["execution_name"]]
        assert body["kind"] == "saga_kit.parked_compensation" and body["version"] == 2
        assert body["saga_type"] == "order_fulfillment"
        assert body["execution_arn"] == saga["arn"]
        assert body["state"]["saga_id"] == body["execution_name"]
        failed = body["state"]["compensation_failure"]
        remaining = [failed["failed_compensation"], *failed["pending_compensations"]]
        assert remaining == order[order.index(remaining[0]):]  # strict reverse order
        assert failed["error"] == "TransientStepError" and failed["cause"]
        assert failed["attempts"] == 6
        assert body["state"]["failure"]["step"] == "create_shipment"
        # Every action result a compensation may need is in the message.
        assert set(body["state"]["results"]) == {"reserve_inventory", "charge_payment"}
