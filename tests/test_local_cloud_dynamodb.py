"""The local cloud's DynamoDB patches keep DynamoDB's semantics: isolation and atomic rollback."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError


@pytest.fixture(scope="module")
def ledger(cloud: Any) -> tuple[Any, str]:
    db = cloud.client("dynamodb")
    name = "local-cloud-ledger"
    db.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                          {"AttributeName": "sk", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                               {"AttributeName": "sk", "KeyType": "RANGE"}])
    for account in ("a", "b"):
        db.put_item(TableName=name, Item={"pk": {"S": "acct"}, "sk": {"S": account},
                                          "balance": {"N": "100"}})
    return db, name


def _move(name: str, source: str, target: str, amount: int) -> list[dict[str, Any]]:
    def update(sk: str, delta: int, condition: bool) -> dict[str, Any]:
        op: dict[str, Any] = {
            "TableName": name, "Key": {"pk": {"S": "acct"}, "sk": {"S": sk}},
            "UpdateExpression": "SET balance = balance + :d",
            "ExpressionAttributeValues": {":d": {"N": str(delta)}},
        }
        if condition:
            op["ConditionExpression"] = "balance >= :need"
            op["ExpressionAttributeValues"][":need"] = {"N": str(-delta)}
        return {"Update": op}
    # Credit first, so a failing debit must roll back an update already applied.
    return [update(target, amount, False), update(source, -amount, True)]


def _balances(db: Any, name: str) -> dict[str, int]:
    items = db.query(TableName=name, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "acct"}},
                     ConsistentRead=True)["Items"]
    return {i["sk"]["S"]: int(i["balance"]["N"]) for i in items}


def test_failed_transaction_rolls_back_items_it_already_changed(ledger: tuple[Any, str]) -> None:
    db, name = ledger
    before = _balances(db, name)
    with pytest.raises(ClientError) as caught:
        db.transact_write_items(TransactItems=_move(name, "a", "b", 10_000))
    reasons = [r["Code"] for r in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert _balances(db, name) == before


def test_concurrent_transactions_conserve_the_total(ledger: tuple[Any, str]) -> None:
    db, name = ledger
    total = sum(_balances(db, name).values())
    errors: list[Exception] = []

    def shuffle(source: str, target: str) -> None:
        for _ in range(25):
            try:
                db.transact_write_items(TransactItems=_move(name, source, target, 7))
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    errors.append(error)
            except Exception as error:  # a thread-safety failure would land here
                errors.append(error)

    threads = [threading.Thread(target=shuffle, args=pair)
               for pair in (("a", "b"), ("b", "a"), ("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    balances = _balances(db, name)
    assert sum(balances.values()) == total
    assert min(balances.values()) >= 0
