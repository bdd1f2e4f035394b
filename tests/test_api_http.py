"""The saga API over real HTTP: ``saga serve`` in its own process, called on loopback.

Every answer is checked against the contract of the deployed API, and every refusal against the
executions that exist (counted through the server's moto endpoint): a bad request starts nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from demo.order_demo import CUSTOMER, SKU, OrderParticipants, OrderTables
from saga_kit.cli.api_client import ApiAnswer, SagaApiClient
from saga_kit.cli.main import app as cli_app
from saga_kit.contract import saga_outputs
from stacks.app_factory import ORDER_STACK_NAME

ROOT = Path(__file__).resolve().parent.parent
SERVE_STARTUP_SECONDS = 120
TYPE = "order_fulfillment"
SEED_STOCK = 1_000_000
SEED_BALANCE_CENTS = 10_000_000_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``saga serve`` started as a separate process on the reference app (``app.py``, the
    participants seeded from a file); its ready line (URLs, sagas, stack outputs)."""
    logs = tmp_path_factory.mktemp("serve")
    stdout_path, stderr_path = logs / "stdout", logs / "stderr"
    seed_path = logs / "seed.json"
    seed_path.write_text(json.dumps({
        "InventoryTableName": [{"pk": f"sku#{SKU}", "stock": SEED_STOCK}],
        "PaymentsTableName": [{"pk": f"account#{CUSTOMER}", "balance": SEED_BALANCE_CENTS}],
    }))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "saga_kit.cli.main", "serve", "--stack", ORDER_STACK_NAME, "--json",
             "--port", str(_free_port()),
             "--aws-port", str(_free_port()), "--seed", str(seed_path)],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + SERVE_STARTUP_SECONDS
        info = None
        while info is None:
            for line in stdout_path.read_text().splitlines():
                if line.startswith("{") and '"ready"' in line:
                    info = json.loads(line)
            if process.poll() is not None:
                pytest.fail(f"saga serve exited with {process.returncode}:\n"
                            f"{stderr_path.read_text()[-3000:]}")
            if info is None and time.monotonic() > deadline:
                pytest.fail(f"saga serve not ready after {SERVE_STARTUP_SECONDS}s")
            if info is None:
                time.sleep(0.2)
        assert info["seeded"] == {"InventoryTableName": 1, "PaymentsTableName": 1}
        yield {**info, "seeded": {"stock": SEED_STOCK, "balance_cents": SEED_BALANCE_CENTS}}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def api(served: dict[str, Any]) -> SagaApiClient:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    return SagaApiClient(served["api_url"], session=session)


@pytest.fixture(scope="module")
def sfn(served: dict[str, Any]) -> Any:
    """Step Functions of the served local cloud, through its moto endpoint."""
    return boto3.client("stepfunctions", endpoint_url=served["endpoint_url"],
                        region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _executions(sfn: Any, served: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=served["sagas"][TYPE]["StateMachineArn"]):
        names.extend(e["name"] for e in page["executions"])
    return names


def order(quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"order_id": f"order-{time.monotonic_ns()}", "customer_id": CUSTOMER, "sku": SKU,
            "quantity": quantity, "amount_cents": 1999 * quantity, **extra}


def _key(label: str) -> str:
    return f"{label}-{time.monotonic_ns()}"


def wait_terminal(api: SagaApiClient, saga_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        answer = api.status(TYPE, saga_id)
        assert answer.status == 200, answer.body
        if answer.body["status"] in ("completed", "compensated", "failed"):
            return answer.body
        if time.monotonic() > deadline:
            raise TimeoutError(f"saga {saga_id} still {answer.body['status']} after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def test_start_answers_202_with_the_status_url_and_completes(api: SagaApiClient) -> None:
    key = _key("happy")
    answer = api.start(TYPE, order(), idempotency_key=key)
    assert answer.status == 202, answer.body
    assert answer.body["saga_id"] == key and answer.body["duplicate"] is False
    assert answer.body["status_url"] == f"{api.base_url}/sagas/{TYPE}/{key}"
    assert answer.body["execution_arn"].endswith(f":{key}")
    final = wait_terminal(api, key)
    assert final["status"] == "completed" and final["source"] == "store"
    assert [(s["step"], s["status"]) for s in final["steps"]] == [
        ("reserve_inventory", "succeeded"), ("charge_payment", "succeeded"),
        ("create_shipment", "succeeded"), ("send_confirmation", "succeeded")]


def test_status_while_running_then_after(api: SagaApiClient) -> None:
    key = _key("slow")
    slow_shipping = [{"step": "create_shipment", "kind": "timeout", "seconds": 1.5}]
    assert api.start(TYPE, order(faults=slow_shipping), idempotency_key=key).status == 202
    running = api.status(TYPE, key)
    assert running.status == 200
    assert running.body["status"] == "running" and running.body["terminal"] is False
    assert wait_terminal(api, key)["status"] == "completed"


def test_status_after_compensation_lists_the_undo_in_reverse_order(api: SagaApiClient) -> None:
    key = _key("undo")
    failing = [{"step": "create_shipment", "kind": "business_error"}]
    assert api.start(TYPE, order(faults=failing), idempotency_key=key).status == 202
    final = wait_terminal(api, key)
    assert final["status"] == "compensated"
    assert final["failure"]["step"] == "create_shipment"
    assert [(s["step"], s["phase"]) for s in final["steps"]] == [
        ("reserve_inventory", "action"), ("charge_payment", "action"),
        ("create_shipment", "action"), ("create_shipment", "compensation"),
        ("charge_payment", "compensation"), ("reserve_inventory", "compensation")]


def test_the_same_key_again_is_the_same_saga(api: SagaApiClient, sfn: Any,
                                             served: dict[str, Any]) -> None:
    key, body = _key("retry"), order()
    first = api.start(TYPE, body, idempotency_key=key)
    again = api.start(TYPE, body, idempotency_key=key)
    assert first.status == again.status == 202
    assert again.body["duplicate"] is True
    assert again.body["execution_arn"] == first.body["execution_arn"]
    wait_terminal(api, key)
    late = api.start(TYPE, body, idempotency_key=key)  # after it finished, too
    assert late.status == 202 and late.body["status"] == "completed"
    assert _executions(sfn, served).count(key) == 1


def test_the_same_key_with_another_body_is_422(api: SagaApiClient, sfn: Any,
                                               served: dict[str, Any]) -> None:
    key, body = _key("clash"), order()
    assert api.start(TYPE, body, idempotency_key=key).status == 202
    clash = api.start(TYPE, {**body, "quantity": 2, "amount_cents": 3998}, idempotency_key=key)
    assert clash.status == 422
    assert "different body" in clash.body["message"]
    assert _executions(sfn, served).count(key) == 1
    described = sfn.describe_execution(executionArn=f"{served['sagas'][TYPE]['StateMachineArn']}"
                                       .replace(":stateMachine:", ":execution:") + f":{key}")
    assert json.loads(described["input"])["quantity"] == 1


BAD_REQUESTS = [
    # (label, path type, headers, body, status, message fragment)
    ("malformed JSON", TYPE, {"Idempotency-Key": "k"}, '{"order_id": ', 400, "Invalid request body"),
    ("field fails the schema", TYPE, {"Idempotency-Key": "k"},
     json.dumps({**order(), "quantity": 0}), 400, "quantity"),
    ("unknown field", TYPE, {"Idempotency-Key": "k"}, json.dumps({**order(), "saga_id": "x"}),
     400, "saga_id"),
    ("unknown saga type", "trip_booking", {"Idempotency-Key": "k"}, json.dumps(order()), 404,
     "unknown saga type 'trip_booking'"),
    ("body over 10 MB", TYPE, {"Idempotency-Key": "k"}, " " * (10 * 1024 * 1024 + 1), 413, ""),
    ("missing Idempotency-Key", TYPE, {}, json.dumps(order()), 400, "Idempotency-Key"),
    ("malformed Idempotency-Key", TYPE, {"Idempotency-Key": "not a key!"}, json.dumps(order()),
     400, "Idempotency-Key"),
]


@pytest.mark.parametrize(("label", "saga_type", "headers", "body", "status", "fragment"),
                         BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_and_start_nothing(
    api: SagaApiClient, sfn: Any, served: dict[str, Any], label: str, saga_type: str,
    headers: dict[str, str], body: str, status: int, fragment: str,
) -> None:
    before = len(_executions(sfn, served))
    answer = api._send("POST", f"/sagas/{saga_type}", body, headers)
    assert answer.status == status, (label, answer.body)
    assert fragment in answer.body["message"], answer.body
    assert len(_executions(sfn, served)) == before


def test_unknown_saga_and_unknown_route(api: SagaApiClient) -> None:
    missing = api.status(TYPE, "no-such-saga")
    assert missing.status == 404 and "no-such-saga" in missing.body["message"]
    assert api.status("trip_booking", "x").status == 404
    assert api._send("DELETE", f"/sagas/{TYPE}").status == 403  # API Gateway: no such method


def test_200_concurrent_starts_with_duplicate_keys(api: SagaApiClient, sfn: Any,
                                                   served: dict[str, Any]) -> None:
    unique = [(_key(f"burst{i}"), order()) for i in range(140)]
    requests_ = unique + [unique[i] for i in range(0, 120, 2)]  # 60 keys sent twice
    assert len(requests_) == 200
    gate = threading.Barrier(len(requests_))
    retried: list[int] = []

    def send(request: tuple[str, dict[str, Any]]) -> list[ApiAnswer]:
        """Like a well-behaved client: retry 429/5xx with the same key until answered."""
        gate.wait()
        answers = []
        deadline = time.monotonic() + 240
        while True:
            answer = api.start(TYPE, request[1], idempotency_key=request[0])
            answers.append(answer)
            if answer.status < 429 or time.monotonic() > deadline:
                return answers
            retried.append(answer.status)
            time.sleep(0.5)

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        answered = list(pool.map(send, requests_))
    finals = [answers[-1] for answers in answered]
    assert [a.status for a in finals] == [202] * 200, [a.body for a in finals if a.status != 202]
    keys = {key for key, _ in unique}
    first_starts: dict[str, int] = {}
    for (key, _), answers in zip(requests_, answered, strict=True):
        first_starts[key] = first_starts.get(key, 0) + sum(
            1 for a in answers if a.status == 202 and not a.body["duplicate"])
    assert max(first_starts.values()) <= 1  # no key was ever reported started twice
    names = _executions(sfn, served)
    assert sorted(n for n in names if n in keys) == sorted(keys)  # exactly one execution per key
    print(f"200 concurrent starts: {len(retried)} answers retried ({sorted(set(retried))})")

    dynamodb = boto3.client("dynamodb", endpoint_url=served["endpoint_url"],
                            region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")
    table = saga_outputs(served["outputs"])["StoreTableName"]
    deadline = time.monotonic() + 180
    while True:
        statuses = {}
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page["Items"]:
                statuses[item["saga_id"]["S"]] = item["status"]["S"]
        pending = [k for k in keys if statuses.get(k) not in ("completed", "compensated", "failed")]
        if not pending:
            break
        assert time.monotonic() < deadline, f"{len(pending)} sagas not finished: {pending[:5]}"
        time.sleep(0.5)
    # Every Lambda shares two cores under this burst, but handler time keeps a starved step
    # from timing out: every saga completes, and the books say so.
    outcomes = {statuses[k] for k in keys}
    assert outcomes == {"completed"}, outcomes
    completed = sum(1 for status in statuses.values() if status == "completed")
    books = OrderParticipants(dynamodb, OrderTables.from_outputs(served["outputs"])).books()
    seeded = served["seeded"]
    # Every saga this module started orders one unit at 19.99 for the seeded customer.
    assert books["stock"][SKU] == seeded["stock"] - completed
    assert books["balances"][CUSTOMER] == seeded["balance_cents"] - 1999 * completed


def test_cli_start_and_status_against_saga_serve(served: dict[str, Any]) -> None:
    runner = CliRunner()
    key = _key("cli")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    started = runner.invoke(cli_app, ["start", "--saga", TYPE, "--input", json.dumps(order()),
                                      "--idempotency-key", key, "--api-url", served["api_url"]],
                            env=env)
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["saga_id"] == key
    deadline = time.monotonic() + 60
    while True:
        shown = runner.invoke(cli_app, ["status", key, "--saga", TYPE, "--api-url", served["api_url"]],
                              env=env)
        assert shown.exit_code == 0, shown.output
        if json.loads(shown.stdout)["status"] == "completed":
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # Without --saga, the stack names it: read through saga serve's AWS endpoint.
    by_stack = runner.invoke(cli_app, ["status", key, "--stack", served["stack"], "--endpoint-url",
                                       served["endpoint_url"], "--api-url", served["api_url"]],
                             env=env)
    assert by_stack.exit_code == 0, by_stack.output
    assert json.loads(by_stack.stdout)["saga_type"] == TYPE
    # The older form, the saga as the first argument, still works.
    refused = runner.invoke(cli_app, ["start", TYPE, "--input", "{}", "--idempotency-key", key,
                                      "--api-url", served["api_url"]], env=env)
    assert refused.exit_code == 1
    assert "HTTP 400" in refused.output
