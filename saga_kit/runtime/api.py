"""The saga API: start sagas and ask what happened to them (API Gateway REST, Lambda proxy).

Routes (one set for every saga the app declares, see ``saga_kit/cdk/api.py``):

* ``POST /sagas/{saga_type}``: body = the saga's input, validated with its pydantic model
  (the gateway validates it first with the same schema). The ``Idempotency-Key`` header is the
  saga id and the execution name, so a retried request can never start a second execution: the
  same key with the same body answers with the same saga, with another body ``422``. Answers
  ``202`` with the saga id and its status URL.
* ``GET /sagas/{saga_type}/{saga_id}``: the saga's status and step log from the saga store, or
  from the execution itself when the store has not heard of it yet.

Every error is JSON ``{"message": ..., "errors": [{"field", "message"}]}`` with a 4xx status
that names the reason, and a request that fails starts nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from botocore.exceptions import ClientError

from saga_kit.contract import DEFAULT_MAX_BODY_BYTES, IDEMPOTENCY_HEADER, Env, execution_arn
from saga_kit.runtime import store
from saga_kit.runtime.step import RESERVED_STATE_KEYS, aws_client, dynamodb_client
from saga_kit.runtime.version import check_kit_version

logger = Logger()
app = APIGatewayRestResolver()

#: Saga ids (and so idempotency keys) are Step Functions execution names.
SAGA_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_models_lock = threading.Lock()
_models: dict[str, Any] = {}


class ApiError(Exception):
    """A request the API refuses, with its status code and reasons."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
                   ) -> Response:
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(body, default=str), headers=headers or {})


@app.exception_handler(ApiError)
def _refused(error: ApiError) -> Response:
    body: dict[str, Any] = {"message": error.message}
    if error.errors:
        body["errors"] = error.errors
    return _json_response(error.status, body)


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("request failed")
    return _json_response(500, {"message": "internal error; nothing was started unless the "
                                           "response said so. Retry with the same "
                                           "Idempotency-Key."})


@app.not_found
def _no_route(_error: Exception) -> Response:
    return _json_response(404, {"message": "no such route; use POST /sagas/{saga_type} or "
                                           "GET /sagas/{saga_type}/{saga_id}"})


def routes() -> dict[str, dict[str, Any]]:
    """The sagas this API serves: saga type -> state machine ARN, store table, input model."""
    return json.loads(os.environ[Env.API_ROUTES])


def _route(saga_type: str) -> dict[str, Any]:
    known = routes()
    if saga_type not in known:
        raise ApiError(404, f"unknown saga type '{saga_type}'; this API serves: "
                            f"{', '.join(sorted(known))}")
    return known[saga_type]


def _model(path: str) -> Any:
    with _models_lock:
        if path not in _models:
            module, _, name = path.rpartition(".")
            _models[path] = getattr(importlib.import_module(module), name)
        return _models[path]


def _status_url(saga_type: str, saga_id: str) -> str:
    """The saga's status URL, under the same base (host and stage) the request came to."""
    event = app.current_event
    host = app.current_event.get_header_value("Host") or event.request_context.domain_name or ""
    proto = app.current_event.get_header_value("X-Forwarded-Proto") or "https"
    full_path = event.request_context.path or event.path
    base = full_path[: -len(event.path)] if full_path.endswith(event.path) else ""
    return f"{proto}://{host}{base}/sagas/{saga_type}/{saga_id}"


def validated_input(route: dict[str, Any], raw: str | None) -> dict[str, Any]:
    """The request body as the saga's input: JSON, an object, valid against the input model."""
    from pydantic import ValidationError

    raw = raw or ""
    limit = int(os.environ.get(Env.API_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES))
    size = len(raw.encode("utf-8"))
    if size > limit:
        raise ApiError(413, f"the body is {size} bytes; the limit is {limit} bytes")
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    reserved = sorted((RESERVED_STATE_KEYS | {"saga_id"}) & body.keys())
    if reserved:
        raise ApiError(400, "the body sets keys the saga owns",
                       [{"field": key, "message": "reserved; the saga id is the Idempotency-Key "
                         "header" if key == "saga_id" else "reserved by the saga"}
                        for key in reserved])
    if not route.get("input_model"):
        return body
    try:
        model = _model(route["input_model"]).model_validate(body)
    except ValidationError as error:
        problems = [{"field": ".".join(str(part) for part in e["loc"]) or "(body)",
                     "message": e["msg"]} for e in error.errors()]
        fields = ", ".join(p["field"] for p in problems)
        raise ApiError(400, f"the body does not match the {route['saga_type']} input: {fields}",
                       problems) from None
    return model.model_dump(mode="json", exclude_none=True)


def _saga_id() -> str:
    key = app.current_event.get_header_value(IDEMPOTENCY_HEADER)
    if key is None:
        if os.environ.get(Env.API_REQUIRE_IDEMPOTENCY_KEY, "true") == "true":
            raise ApiError(400, f"the {IDEMPOTENCY_HEADER} header is required: a client retry "
                                "with the same key returns the same saga instead of starting "
                                "another", [{"field": IDEMPOTENCY_HEADER, "message": "missing"}])
        return uuid.uuid4().hex
    if not SAGA_ID.match(key):
        raise ApiError(400, f"the {IDEMPOTENCY_HEADER} header must be 1 to 80 letters, digits, "
                            "'-' or '_' (it becomes the saga id)",
                       [{"field": IDEMPOTENCY_HEADER, "message": "malformed"}])
    return key


@app.post("/sagas/<saga_type>")
def start(saga_type: str) -> Response:
    """Starts a saga (or answers for the one this Idempotency-Key already started)."""
    route = {**_route(saga_type), "saga_type": saga_type}
    saga_id = _saga_id()
    saga_input = {**validated_input(route, app.current_event.body), "saga_id": saga_id}
    document = json.dumps(saga_input, sort_keys=True, separators=(",", ":"))
    sfn = aws_client("stepfunctions")
    duplicate = False
    try:
        arn = sfn.start_execution(stateMachineArn=route["state_machine_arn"], name=saga_id,
                                  input=document)["executionArn"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
        arn = execution_arn(route["state_machine_arn"], saga_id)
        existing = json.loads(sfn.describe_execution(executionArn=arn).get("input") or "{}")
        if existing != saga_input:
            raise ApiError(422, f"{IDEMPOTENCY_HEADER} '{saga_id}' was already used with a "
                                "different body; use a new key for a new saga") from None
        duplicate = True
    if not duplicate:
        # Step Functions answers a repeated start of a running execution (same name, same
        # input) with that execution; the store's start record tells the repeat apart.
        duplicate = not _record_start(route, saga_type, saga_id, arn, document)
    status = _stored(route, saga_type, saga_id)
    url = _status_url(saga_type, saga_id)
    logger.info("saga started" if not duplicate else "duplicate start answered",
                extra={"saga_type": saga_type, "saga_id": saga_id})
    return _json_response(202, {
        "saga_type": saga_type,
        "saga_id": saga_id,
        "execution_arn": arn,
        "status": (status or {}).get("status", store.RUNNING),
        "status_url": url,
        "duplicate": duplicate,
    }, headers={"Location": url})


def _record_start(route: dict[str, Any], saga_type: str, saga_id: str, arn: str,
                  document: str) -> bool:
    """The store's first word on the saga: running, when, and a digest of what was asked.

    Returns ``False`` when a start was already recorded (this request is a repeat).
    """
    now = store.timestamp(datetime.now(UTC))
    try:
        dynamodb_client().update_item(
            TableName=route["store_table"],
            Key=store.key(saga_type, saga_id),
            UpdateExpression=(
                "SET #status = if_not_exists(#status, :running), execution_arn = :arn, "
                "created_at = if_not_exists(created_at, :now), "
                "updated_at = if_not_exists(updated_at, :now), request_sha256 = :digest"
            ),
            ConditionExpression="attribute_not_exists(request_sha256)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":running": {"S": store.RUNNING}, ":arn": {"S": arn}, ":now": {"S": now},
                ":digest": {"S": hashlib.sha256(document.encode()).hexdigest()},
            },
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        # The execution runs whatever the store says; its handlers will write the item.
        logger.warning(f"saga store not updated at start: {error}")
    return True


def _stored(route: dict[str, Any], saga_type: str, saga_id: str) -> dict[str, Any] | None:
    item = dynamodb_client().get_item(TableName=route["store_table"], ConsistentRead=True,
                                      Key=store.key(saga_type, saga_id)).get("Item")
    return store.item_to_json(item) if item else None


@app.get("/sagas/<saga_type>/<saga_id>")
def status(saga_type: str, saga_id: str) -> Response:
    """The saga's status and step log (from the store, else from its execution)."""
    route = _route(saga_type)
    if not SAGA_ID.match(saga_id):
        raise ApiError(400, "a saga id is 1 to 80 letters, digits, '-' or '_'",
                       [{"field": "saga_id", "message": "malformed"}])
    item = _stored(route, saga_type, saga_id)
    if item is not None:
        return _json_response(200, {**store.describe(item), "source": "store"})
    arn = execution_arn(route["state_machine_arn"], saga_id)
    try:
        described = aws_client("stepfunctions").describe_execution(executionArn=arn)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
        raise ApiError(404, f"no {saga_type} saga has the id '{saga_id}'") from None
    return _json_response(200, {
        "saga_type": saga_type,
        "saga_id": saga_id,
        "execution_arn": arn,
        "status": store.status_of_execution(described["status"], described.get("error"))
        or store.RUNNING,
        "steps": [],
        "source": "execution",
    })


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point behind API Gateway."""
    check_kit_version()
    return app.resolve(event, context)
