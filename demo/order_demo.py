"""The order-fulfillment saga's participants as seen from outside: seed them, read their books.

Used by ``saga demo`` and by the tests to prove that a saga left the participants consistent:
stock back, net charge zero, no stray shipment; or, past the pivot, everything done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from demo.participants import SimulatedParticipants
from saga_kit.cli import new_saga_id

SKU = "sku-widget"
CUSTOMER = "customer-1"
MERCHANT = "merchant"
PRICE_CENTS = 1999


@dataclass(frozen=True)
class OrderTables:
    """The participant tables, by the stack outputs that name them."""

    inventory: str
    payments: str
    shipments: str
    confirmations: str
    faults: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> OrderTables:
        """Reads the table names from the stack's CloudFormation outputs."""
        return cls(
            inventory=outputs["InventoryTableName"],
            payments=outputs["PaymentsTableName"],
            shipments=outputs["ShipmentsTableName"],
            confirmations=outputs["ConfirmationsTableName"],
            faults=outputs["FaultTableName"],
        )


def order_input(
    *, quantity: int = 1, faults: list[dict[str, Any]] | None = None, saga_id: str | None = None,
    sku: str = SKU, customer: str = CUSTOMER,
) -> dict[str, Any]:
    """A saga input for one order line."""
    body: dict[str, Any] = {
        "saga_id": saga_id or new_saga_id(),
        "order_id": f"order-{new_saga_id()[:8]}",
        "customer_id": customer,
        "sku": sku,
        "quantity": quantity,
        "amount_cents": PRICE_CENTS * quantity,
        "address": "1 Example Street",
    }
    if faults:
        body["faults"] = faults
    return body


class OrderParticipants(SimulatedParticipants):
    """Seeds and reads the simulated inventory, payments, shipping and notifications services."""

    def __init__(self, dynamodb: Any, tables: OrderTables):
        super().__init__(dynamodb, payments_table=tables.payments, fault_table=tables.faults)
        self.tables = tables

    def seed_stock(self, stock: int, sku: str = SKU) -> None:
        """Sets a SKU's stock on the shelf."""
        self._db.put_item(TableName=self.tables.inventory,
                          Item={"pk": {"S": f"sku#{sku}"}, "stock": {"N": str(stock)}})

    def compensation_runs(self, saga_id: str) -> dict[str, int]:
        """How many times each compensation body ran for a saga (the simulation counts them)."""
        runs = {}
        for step in ("reserve_inventory", "charge_payment", "create_shipment"):
            count = self.runs(saga_id, step, "compensation")
            if count:
                runs[step] = count
        return runs

    def stock(self, sku: str = SKU) -> int:
        """Units of ``sku`` on the shelf (not reserved)."""
        return self._counter(self.tables.inventory, f"sku#{sku}", "stock")

    def saga_effects(self, saga_id: str) -> dict[str, Any]:
        """Everything the participants hold for one saga."""
        reservation = self._get(self.tables.inventory, f"reservation#{saga_id}")
        shipment = self._get(self.tables.shipments, saga_id)
        confirmation = self._get(self.tables.confirmations, saga_id)
        return {
            "reserved": int(reservation["quantity"]["N"]) if reservation else 0,
            **self._charge_effects(saga_id),
            "shipment": shipment["status"]["S"] if shipment else None,
            "confirmed": confirmation is not None,
        }

    def books(self) -> dict[str, Any]:
        """The participants' totals: what must balance after any mix of sagas."""
        inventory = self._scan(self.tables.inventory)
        shipments = self._scan(self.tables.shipments)
        return {
            "stock": {i["pk"]["S"].removeprefix("sku#"): int(i["stock"]["N"])
                      for i in inventory if i["pk"]["S"].startswith("sku#")},
            "reserved_units": sum(int(i["quantity"]["N"]) for i in inventory
                                  if i["pk"]["S"].startswith("reservation#")),
            **self._ledger_books(),
            "shipments_created": sum(1 for s in shipments if s["status"]["S"] == "created"),
            "shipments_cancelled": sum(1 for s in shipments if s["status"]["S"] == "cancelled"),
            "confirmations": len(self._scan(self.tables.confirmations)),
        }
