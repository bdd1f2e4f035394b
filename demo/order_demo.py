"""The order-fulfillment saga's participants as seen from outside: seed them, read their books.

Used by ``saga demo`` and by the tests to prove that a saga left the participants consistent:
stock back, net charge zero, no stray shipment; or, past the pivot, everything done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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


class OrderParticipants:
    """Seeds and reads the simulated inventory, payments, shipping and notifications services."""

    def __init__(self, dynamodb: Any, tables: OrderTables):
        self._db = dynamodb
        self.tables = tables

    def seed_stock(self, stock: int, sku: str = SKU) -> None:
        """Sets a SKU's stock on the shelf."""
        self._db.put_item(TableName=self.tables.inventory,
                          Item={"pk": {"S": f"sku#{sku}"}, "stock": {"N": str(stock)}})

    def open_account(self, customer: str, balance_cents: int) -> None:
        """Sets an account's balance (the merchant's account is an account like any other)."""
        self._db.put_item(TableName=self.tables.payments,
                          Item={"pk": {"S": f"account#{customer}"},
                                "balance": {"N": str(balance_cents)}})

    def set_fault_rules(self, saga_id: str, rules: list[dict[str, Any]] | None) -> None:
        """Adds (or with ``None`` removes) fault rules for a running saga, like an operator would."""
        key = {"pk": {"S": f"rules#{saga_id}"}}
        if rules is None:
            self._db.delete_item(TableName=self.tables.faults, Key=key)
        else:
            self._db.put_item(TableName=self.tables.faults,
                              Item={**key, "faults": {"S": json.dumps(rules)}})

    def compensation_runs(self, saga_id: str) -> dict[str, int]:
        """How many times each compensation body ran for a saga (the simulation counts them)."""
        runs = {}
        for step in ("reserve_inventory", "charge_payment", "create_shipment"):
            item = self._db.get_item(TableName=self.tables.faults, ConsistentRead=True, Key={
                "pk": {"S": f"runs#{saga_id}#{step}#compensation"}}).get("Item")
            if item:
                runs[step] = int(item["runs"]["N"])
        return runs

    def _scan(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self._db.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def stock(self, sku: str = SKU) -> int:
        """Units of ``sku`` on the shelf (not reserved)."""
        item = self._db.get_item(TableName=self.tables.inventory,
                                 Key={"pk": {"S": f"sku#{sku}"}}, ConsistentRead=True)["Item"]
        return int(item["stock"]["N"])

    def saga_effects(self, saga_id: str) -> dict[str, Any]:
        """Everything the participants hold for one saga."""
        def get(table: str, pk: str) -> dict[str, Any] | None:
            return self._db.get_item(TableName=table, Key={"pk": {"S": pk}},
                                     ConsistentRead=True).get("Item")

        reservation = get(self.tables.inventory, f"reservation#{saga_id}")
        charge = get(self.tables.payments, f"charge#{saga_id}")
        shipment = get(self.tables.shipments, saga_id)
        confirmation = get(self.tables.confirmations, saga_id)
        return {
            "reserved": int(reservation["quantity"]["N"]) if reservation else 0,
            "charge": charge["status"]["S"] if charge else None,
            "net_charge_cents": (
                int(charge["amount"]["N"]) if charge and charge["status"]["S"] == "charged" else 0
            ),
            "shipment": shipment["status"]["S"] if shipment else None,
            "confirmed": confirmation is not None,
        }

    def books(self) -> dict[str, Any]:
        """The participants' totals: what must balance after any mix of sagas."""
        inventory = self._scan(self.tables.inventory)
        payments = self._scan(self.tables.payments)
        shipments = self._scan(self.tables.shipments)
        balances = {
            i["pk"]["S"].removeprefix("account#"): int(i["balance"]["N"])
            for i in payments if i["pk"]["S"].startswith("account#")
        }
        charges = [i for i in payments if i["pk"]["S"].startswith("charge#")]
        return {
            "stock": {i["pk"]["S"].removeprefix("sku#"): int(i["stock"]["N"])
                      for i in inventory if i["pk"]["S"].startswith("sku#")},
            "reserved_units": sum(int(i["quantity"]["N"]) for i in inventory
                                  if i["pk"]["S"].startswith("reservation#")),
            "balances": balances,
            "money_total": sum(balances.values()),
            "charges_open": sum(1 for c in charges if c["status"]["S"] == "charged"),
            "charges_refunded": sum(1 for c in charges if c["status"]["S"] == "refunded"),
            "shipments_created": sum(1 for s in shipments if s["status"]["S"] == "created"),
            "shipments_cancelled": sum(1 for s in shipments if s["status"]["S"] == "cancelled"),
            "confirmations": len(self._scan(self.tables.confirmations)),
        }
