"""What the example apps' simulated participants share, as seen from outside.

Every app (``demo/order_demo.py``, ``demo/travel_demo.py``) keeps a payments ledger (the
``ledger`` module in ``lambdas/``: ``account#<name>`` balances and one ``charge#<saga id>`` per
saga) and a fault table (rules, hit counts and the run counter of the ``fault_injection``
module). Reading them is the same for every app, so it is written once here.
"""

from __future__ import annotations

import json
from typing import Any


class SimulatedParticipants:
    """Reads and seeds the parts every example app has: the ledger and the fault table."""

    def __init__(self, dynamodb: Any, *, payments_table: str, fault_table: str):
        self._db = dynamodb
        self._payments_table = payments_table
        self._fault_table = fault_table

    def _get(self, table: str, pk: str) -> dict[str, Any] | None:
        return self._db.get_item(TableName=table, Key={"pk": {"S": pk}},
                                 ConsistentRead=True).get("Item")

    def _scan(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self._db.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _counter(self, table: str, pk: str, attribute: str) -> int:
        """A counter item's value (seeded by the caller: a missing item is a test's mistake)."""
        item = self._db.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True)["Item"]
        return int(item[attribute]["N"])

    def open_account(self, account: str, balance_cents: int) -> None:
        """Sets an account's balance (the merchant's or agency's account is one like any other)."""
        self._db.put_item(TableName=self._payments_table,
                          Item={"pk": {"S": f"account#{account}"},
                                "balance": {"N": str(balance_cents)}})

    def balance(self, account: str) -> int:
        """An account's balance in cents (0 for an account never opened)."""
        item = self._get(self._payments_table, f"account#{account}")
        return int(item["balance"]["N"]) if item else 0

    def set_fault_rules(self, saga_id: str, rules: list[dict[str, Any]] | None) -> None:
        """Adds (or with ``None`` removes) fault rules for a running saga, like an operator would."""
        key = {"pk": {"S": f"rules#{saga_id}"}}
        if rules is None:
            self._db.delete_item(TableName=self._fault_table, Key=key)
        else:
            self._db.put_item(TableName=self._fault_table,
                              Item={**key, "faults": {"S": json.dumps(rules)}})

    def runs(self, saga_id: str, step: str, phase: str) -> int:
        """How many times a handler body ran for (saga, step, phase): ``fault_injection.count_run``'s
        counter, which compensations bump before anything else."""
        item = self._get(self._fault_table, f"runs#{saga_id}#{step}#{phase}")
        return int(item["runs"]["N"]) if item else 0

    def _charge_effects(self, saga_id: str) -> dict[str, Any]:
        """The saga's charge: its status (``None``, ``charged``, ``refunded``) and what it took."""
        charge = self._get(self._payments_table, f"charge#{saga_id}")
        return {
            "charge": charge["status"]["S"] if charge else None,
            "net_charge_cents": (
                int(charge["amount"]["N"]) if charge and charge["status"]["S"] == "charged" else 0
            ),
        }

    def _ledger_books(self) -> dict[str, Any]:
        """Every balance, their total (constant under any mix of sagas) and the charges by status."""
        payments = self._scan(self._payments_table)
        balances = {
            i["pk"]["S"].removeprefix("account#"): int(i["balance"]["N"])
            for i in payments if i["pk"]["S"].startswith("account#")
        }
        charges = [i for i in payments if i["pk"]["S"].startswith("charge#")]
        return {
            "balances": balances,
            "money_total": sum(balances.values()),
            "charges_open": sum(1 for c in charges if c["status"]["S"] == "charged"),
            "charges_refunded": sum(1 for c in charges if c["status"]["S"] == "refunded"),
        }
