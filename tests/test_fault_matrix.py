"""The fault matrix, in the local cloud: every step x every kind of failure.

All sagas start together (each with its own saga id and faults), then every cell checks the final
status, the compensations that ran (each exactly once, in strict reverse order) and the real
effects left in the participants' tables, after any late action has finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from demo.order_demo import CUSTOMER, MERCHANT, SKU, OrderParticipants, order_input
from saga_kit.cli.executions import SagaOutcome, outcome, start_saga, wait_for_execution
from stacks.order_fulfillment import ORDER_FULFILLMENT

STEPS = [s.name for s in ORDER_FULFILLMENT.steps]
PIVOT = ORDER_FULFILLMENT.pivot_index
COMPENSATED_BY = {s.name for s in ORDER_FULFILLMENT.steps if s.compensation}
KINDS = ["business_error", "transient_recovers", "transient_exhausts", "timeout",
         "crash_after_effect"]
STOCK = 1000
BALANCE = 10_000_000
SKU_MATRIX = f"{SKU}-matrix"
CUSTOMER_MATRIX = f"{CUSTOMER}-matrix"


@dataclass
class Cell:
    step: str
    kind: str
    saga_id: str = ""
    execution_arn: str = ""
    outcome: SagaOutcome | None = None
    effects: dict[str, Any] | None = None
    #: On the ("books", "before") entry: the invocation journal's length when the matrix began.
    journal_start: int = 0

    @property
    def index(self) -> int:
        return STEPS.index(self.step)

    @property
    def forward_only(self) -> bool:
        """Past the pivot: retried, never compensated."""
        return PIVOT is not None and self.index > PIVOT

    def faults(self) -> list[dict[str, Any]]:
        rule: dict[str, Any] = {"step": self.step}
        if self.kind == "transient_recovers":
            rule.update(kind="transient_error", times=2)
        elif self.kind == "transient_exhausts":
            rule.update(kind="transient_error")
        else:
            rule["kind"] = self.kind
            if self.forward_only and self.kind in ("timeout", "crash_after_effect"):
                rule["times"] = 1  # forward steps retry every error; the next attempt succeeds
        return [rule]

    def expected_status(self) -> str:
        if self.kind == "transient_recovers":
            return "completed"
        if self.forward_only:
            return "failed" if self.kind in ("business_error", "transient_exhausts") else "completed"
        return "compensated"


def _cells() -> list[Cell]:
    return [Cell(step, kind) for step in STEPS for kind in KINDS]


def _barrier(cloud: Any, saga_id: str, step: str) -> dict[str, Any]:
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.saga_outputs()["BarrierTableName"], ConsistentRead=True,
        Key={"saga": {"S": f"order_fulfillment#{saga_id}"}, "step": {"S": step}}).get("Item", {})
    return item


@pytest.fixture(scope="module")
def late_refusals(cloud: Any, matrix: dict[tuple[str, str], Cell],
                  saga_functions: dict[tuple[str, str], str]) -> dict[str, int]:
    """LateActionRefused outcomes per step's action function while the matrix ran."""
    records = cloud.invocations[matrix[("books", "before")].journal_start:]
    return {step: sum(1 for r in records if r.function_name == saga_functions[(step, "action")]
                      and r.error_type == "LateActionRefused") for step in STEPS}


@pytest.fixture(scope="module")
def matrix(cloud: Any, participants: OrderParticipants) -> dict[tuple[str, str], Cell]:
    sfn = cloud.client("stepfunctions")
    participants.seed_stock(STOCK, sku=SKU_MATRIX)
    participants.open_account(CUSTOMER_MATRIX, BALANCE)
    before = participants.books()
    journal_start = len(cloud.invocations)
    machine = cloud.saga_outputs()["StateMachineArn"]
    cells = {(c.step, c.kind): c for c in _cells()}
    happy = Cell("none", "happy")
    for cell in [*cells.values(), happy]:
        faults = [] if cell is happy else cell.faults()
        cell.saga_id, cell.execution_arn = start_saga(
            sfn, machine, order_input(faults=faults, sku=SKU_MATRIX, customer=CUSTOMER_MATRIX)
        )
    for cell in [*cells.values(), happy]:
        wait_for_execution(sfn, cell.execution_arn, timeout=120)
        cell.outcome = outcome(sfn, cell.execution_arn)
    # Timed-out actions are still running: let them finish before reading any effect.
    cloud.wait_lambdas_idle(timeout=60)
    for cell in [*cells.values(), happy]:
        cell.effects = participants.saga_effects(cell.saga_id)
    cells[("none", "happy")] = happy
    cells[("books", "before")] = Cell("books", "before", effects=before,
                                      journal_start=journal_start)
    return cells


def test_happy_path_completes_every_step(matrix: dict[tuple[str, str], Cell]) -> None:
    happy = matrix[("none", "happy")]
    assert happy.outcome is not None
    assert happy.outcome.status == "completed"
    assert happy.outcome.steps_run == STEPS
    assert happy.outcome.compensations_run == []
    assert happy.effects == {"reserved": 1, "charge": "charged", "net_charge_cents": 1999,
                             "shipment": "created", "confirmed": True}


@pytest.mark.parametrize(("step", "kind"), [(c.step, c.kind) for c in _cells()])
def test_fault_cell(cloud: Any, matrix: dict[tuple[str, str], Cell],
                    late_refusals: dict[str, int], step: str, kind: str) -> None:
    cell = matrix[(step, kind)]
    result, effects = cell.outcome, cell.effects
    assert result is not None and effects is not None
    assert result.status == cell.expected_status(), (result.error, result.cause)

    if result.status == "completed":
        assert result.steps_run == STEPS
        assert result.compensations_run == []
        assert effects == {"reserved": 1, "charge": "charged", "net_charge_cents": 1999,
                           "shipment": "created", "confirmed": True}
        return

    if result.status == "failed":  # past the pivot: forward only, nothing undone
        assert result.error == f"ForwardRecoveryFailed.{step}"
        assert result.steps_run == STEPS
        assert result.compensations_run == []
        assert result.cause["step"] == step
        assert effects == {"reserved": 1, "charge": "charged", "net_charge_cents": 1999,
                           "shipment": "created", "confirmed": False}
        return

    # Compensated: the failed step and every step before it, in strict reverse order, once each.
    assert result.error == f"SagaCompensated.{step}"
    assert result.cause["step"] == step
    assert result.cause["error"]
    assert result.steps_run == STEPS[: cell.index + 1]
    expected = [s for s in reversed(STEPS[: cell.index + 1]) if s in COMPENSATED_BY]
    assert result.compensations_run == expected
    assert effects["reserved"] == 0
    assert effects["net_charge_cents"] == 0
    assert effects["shipment"] in (None, "cancelled")
    assert effects["confirmed"] is False
    barrier = _barrier(cloud, cell.saga_id, step)
    assert "compensated_at" in barrier  # no later action of this step can take effect
    if kind == "crash_after_effect":
        # The effect did happen (the barrier recorded it with the effect) and was undone.
        assert "action_started_at" in barrier
        undone = {"reserve_inventory": ("reserved", 0), "charge_payment": ("charge", "refunded"),
                  "create_shipment": ("shipment", "cancelled")}[step]
        assert effects[undone[0]] == undone[1]
    if kind == "timeout":
        # The slow action ran after its compensation and was refused: no effect at all.
        assert late_refusals[step] == 1
        assert "action_started_at" not in barrier
        never = {"reserve_inventory": ("reserved", 0), "charge_payment": ("charge", None),
                 "create_shipment": ("shipment", None)}[step]
        assert effects[never[0]] == never[1]


def test_books_balance_after_the_whole_matrix(
    participants: OrderParticipants, matrix: dict[tuple[str, str], Cell]
) -> None:
    before = matrix[("books", "before")].effects
    assert before is not None
    forward = [c for c in matrix.values()
               if c.outcome and c.outcome.status in ("completed", "failed")]
    assert len(forward) == 1 + sum(1 for c in _cells() if c.expected_status() != "compensated")
    # Stock: only the sagas that went past the pivot keep their unit.
    assert participants.stock(SKU_MATRIX) == STOCK - len(forward)
    after = participants.books()
    charged = 1999 * len(forward)
    assert after["balances"][CUSTOMER_MATRIX] == BALANCE - charged
    assert after["balances"][MERCHANT] - before["balances"].get(MERCHANT, 0) == charged
    # Money is only ever moved, never created or lost.
    assert after["money_total"] == before["money_total"]
