"""A participant granted to a step's action only: on AWS its compensation is denied, retried and
parked. The local cloud enforces IAM, so the same thing happens here; ``saga.grant`` (the
reference saga) compensates the same failure cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.order_demo import OrderParticipants, OrderTables, order_input
from saga_kit.cli import outcome, start_saga, wait_for_execution
from saga_kit.local_cloud import LocalCloud
from tests.stacks.grant_mistake import STACK_NAME

SHIPMENT_REFUSED = [{"step": "create_shipment", "kind": "business_error"}]


@pytest.fixture(scope="module")
def mistaken(assembly_dir: Path, cloud: Any) -> Iterator[LocalCloud]:
    with LocalCloud(assembly_dir, STACK_NAME) as running:
        yield running


def _run(cloud: LocalCloud, saga_name: str, sku: str, customer: str) -> tuple[str, str]:
    participants = OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(cloud.outputs))
    participants.seed_stock(5, sku=sku)
    participants.open_account(customer, 10_000)
    sfn = cloud.client("stepfunctions")
    saga_id, arn = start_saga(sfn, cloud.saga_outputs(saga_name)["StateMachineArn"],
                              order_input(faults=SHIPMENT_REFUSED, sku=sku, customer=customer))
    wait_for_execution(sfn, arn, timeout=60)
    return saga_id, outcome(sfn, arn).status


def test_a_compensation_without_the_grant_is_denied_and_parked(mistaken: LocalCloud) -> None:
    denied_before = len(mistaken.access_denials)
    saga_id, status = _run(mistaken, "reserve_charge_ship", "sku-grant-mistake", "customer-grant")
    assert status == "parked"
    payments = mistaken.outputs["PaymentsTableName"]
    denials = mistaken.access_denials[denied_before:]
    assert denials, "the refund ran with a grant it was never given"
    assert {d.resource for d in denials} == {
        f"arn:aws:dynamodb:{mistaken.region}:123456789012:table/{payments}"}
    assert all("ChargePaymentCompensation" in d.principal_arn for d in denials)
    participants = OrderParticipants(mistaken.client("dynamodb"),
                                     OrderTables.from_outputs(mistaken.outputs))
    # The customer stays charged: exactly what an operator must then redrive.
    assert participants.saga_effects(saga_id)["net_charge_cents"] > 0


def test_the_same_failure_with_saga_grant_is_compensated(cloud: Any) -> None:
    denied_before = len(cloud.access_denials)
    saga_id, status = _run(cloud, "order_fulfillment", "sku-grant-right", "customer-grant-right")
    assert status == "compensated"
    assert cloud.access_denials[denied_before:] == []
    participants = OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(cloud.outputs))
    effects = participants.saga_effects(saga_id)
    assert (effects["reserved"], effects["net_charge_cents"]) == (0, 0)
