"""The front door and the saga store as synthesized: API methods, validation, auth, throttling,
access logs; the store's keys, index, PITR and TTL; the status-event rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from saga_kit.cdk import ApiAuthorization, Saga, SagaApi, SagaDeclarationError, SagaDefinition, Step
from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT


@pytest.fixture(scope="module")
def cdk_template(template: dict[str, Any]) -> Template:
    return Template.from_json(template)


def _methods(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(HTTP method, resource path) -> method properties, paths rebuilt from the resources."""
    resources = template["Resources"]
    paths: dict[str, str] = {}

    def path_of(logical_id: str | None) -> str:
        if logical_id is None:
            return ""
        if logical_id not in paths:
            props = resources[logical_id]["Properties"]
            parent = props["ParentId"].get("Ref")
            paths[logical_id] = f"{path_of(parent)}/{props['PathPart']}"
        return paths[logical_id]

    found = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGateway::Method":
            props = resource["Properties"]
            found[(props["HttpMethod"], path_of(props["ResourceId"].get("Ref")))] = props
    return found


def test_routes_are_the_saga_types_plus_a_catch_all(template: dict[str, Any]) -> None:
    methods = _methods(template)
    assert set(methods) == {
        ("POST", "/sagas/order_fulfillment"), ("GET", "/sagas/order_fulfillment/{saga_id}"),
        ("POST", "/sagas/{saga_type}"), ("GET", "/sagas/{saga_type}/{saga_id}"),
    }
    for props in methods.values():
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props["ApiKeyRequired"] is False
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert "ApiHandler" in json.dumps(props["Integration"]["Uri"])


def test_start_is_validated_at_the_gateway_with_the_input_model(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    start = _methods(template)[("POST", "/sagas/order_fulfillment")]
    assert start["RequestParameters"] == {"method.request.header.Idempotency-Key": True}
    validator = resources[start["RequestValidatorId"]["Ref"]]["Properties"]
    assert validator["ValidateRequestBody"] is True and validator["ValidateRequestParameters"] is True
    model = resources[start["RequestModels"]["application/json"]["Ref"]]["Properties"]
    schema = model["Schema"]
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"order_id", "customer_id", "sku", "quantity", "amount_cents"}
    assert schema["properties"]["quantity"] == {"maximum": 10000, "minimum": 1,
                                                "title": "Quantity", "type": "integer"}
    # $defs are inlined: draft 4 models cannot refer to them.
    assert "$defs" not in json.dumps(schema)
    assert schema["properties"]["faults"]["items"]["properties"]["kind"]["enum"][0] == "business_error"
    # The same schema validates what the handler's pydantic model validates.
    import jsonschema

    sys.path.insert(0, str(LAMBDAS_DIR))
    try:
        from order_fulfillment.schema import OrderRequest
    finally:
        sys.path.remove(str(LAMBDAS_DIR))
    good = {"order_id": "o-1", "customer_id": "c-1", "sku": "s-1", "quantity": 2, "amount_cents": 10}
    bad = {**good, "quantity": 0}
    jsonschema.Draft4Validator.check_schema(schema)
    assert jsonschema.Draft4Validator(schema).is_valid(good)
    assert not jsonschema.Draft4Validator(schema).is_valid(bad)
    OrderRequest.model_validate(good)
    with pytest.raises(ValueError, match="quantity"):
        OrderRequest.model_validate(bad)


def test_stage_throttles_logs_and_traces(cdk_template: Template) -> None:
    cdk_template.has_resource_properties("AWS::ApiGateway::Stage", {
        "StageName": "prod",
        "TracingEnabled": True,
        "AccessLogSetting": {"DestinationArn": Match.any_value(),
                             "Format": Match.string_like_regexp("requestId")},
        "MethodSettings": Match.array_with([Match.object_like({
            "HttpMethod": "*", "ResourcePath": "/*", "ThrottlingRateLimit": 50,
            "ThrottlingBurstLimit": 100, "LoggingLevel": "ERROR", "MetricsEnabled": True,
            "DataTraceEnabled": False,
        })]),
    })
    responses = cdk_template.find_resources("AWS::ApiGateway::GatewayResponse")
    by_type = {r["Properties"]["ResponseType"]: r["Properties"] for r in responses.values()}
    assert by_type["BAD_REQUEST_BODY"]["StatusCode"] == "400"
    assert "validationErrorString" in by_type["BAD_REQUEST_BODY"]["ResponseTemplates"]["application/json"]
    assert by_type["REQUEST_TOO_LARGE"]["StatusCode"] == "413"


def test_api_handler_may_start_and_describe_only_its_sagas(template: dict[str, Any]) -> None:
    [handler] = [r for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function"
                 and r["Properties"]["Handler"] == "saga_kit.runtime.api.handler"]
    routes = handler["Properties"]["Environment"]["Variables"]["SAGA_API_ROUTES"]
    assert "order_fulfillment.schema.OrderRequest" in json.dumps(routes)
    role = handler["Properties"]["Role"]["Fn::GetAtt"][0]
    [policy] = [r["Properties"]["PolicyDocument"] for r in template["Resources"].values()
                if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]]
    actions = {a for s in policy["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"states:StartExecution", "states:DescribeExecution", "dynamodb:GetItem",
            "dynamodb:UpdateItem"} <= actions
    assert not any(a.endswith("*") for a in actions)


def test_store_keys_index_pitr_and_ttl(template: dict[str, Any]) -> None:
    [store] = [r["Properties"] for k, r in template["Resources"].items()
               if r["Type"] == "AWS::DynamoDB::Table" and k.startswith("OrderFulfillmentStore")]
    assert store["KeySchema"] == [{"AttributeName": "saga_type", "KeyType": "HASH"},
                                  {"AttributeName": "saga_id", "KeyType": "RANGE"}]
    [index] = store["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_status"
    assert index["KeySchema"] == [{"AttributeName": "status", "KeyType": "HASH"},
                                  {"AttributeName": "updated_at", "KeyType": "RANGE"}]
    assert set(index["Projection"]["NonKeyAttributes"]) >= {"current_step", "execution_arn"}
    assert store["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert store["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert store["SSESpecification"] == {"SSEEnabled": True}


def test_execution_endings_reach_the_store_through_eventbridge(cdk_template: Template) -> None:
    cdk_template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.states"],
            "detail-type": ["Step Functions Execution Status Change"],
            "detail": {"stateMachineArn": [Match.any_value()],
                       "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]},
        },
        "Targets": [Match.object_like({
            "DeadLetterConfig": {"Arn": Match.any_value()},
            "RetryPolicy": {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 86400},
        })],
    })
    cdk_template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "saga_kit.runtime.status_events.handler"})


def _api_stack(authorization: ApiAuthorization) -> Template:
    stack = Stack(App(), "ApiOptions")
    saga = Saga(stack, "Order", definition=ORDER_FULFILLMENT,
                code=lambda_.Code.from_inline("def handler(e, c): return e"))
    SagaApi(stack, "Api", sagas=[saga], handlers_dir=LAMBDAS_DIR, authorization=authorization,
            code=lambda_.Code.from_inline("def handler(e, c): return e"),
            throttling_rate_limit=7, throttling_burst_limit=9)
    return Template.from_stack(stack)


def test_api_keys_come_with_a_usage_plan() -> None:
    keyed = _api_stack(ApiAuthorization.API_KEY)
    keyed.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    keyed.has_resource_properties("AWS::ApiGateway::UsagePlan", {
        "Throttle": {"RateLimit": 7, "BurstLimit": 9}, "ApiStages": [Match.any_value()]})
    for method in keyed.find_resources("AWS::ApiGateway::Method").values():
        assert method["Properties"]["ApiKeyRequired"] is True
        assert method["Properties"]["AuthorizationType"] == "NONE"
    iam_only = _api_stack(ApiAuthorization.IAM)
    iam_only.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    iam_only.resource_count_is("AWS::ApiGateway::UsagePlan", 0)


def test_an_input_model_that_does_not_exist_fails_synth_naming_the_saga(tmp_path: Path) -> None:
    definition = SagaDefinition(
        name="trip", input_model="trip.schema.TripRequest",
        steps=[Step("book_flight", action="trip.flights.book",
                    compensation="trip.flights.cancel")])
    stack = Stack(App(), "Broken")
    saga = Saga(stack, "Trip", definition=definition,
                code=lambda_.Code.from_inline("def handler(e, c): return e"))
    with pytest.raises(SagaDeclarationError, match=r"saga 'trip': input_model 'trip.schema.TripRequest'"):
        SagaApi(stack, "Api", sagas=[saga], handlers_dir=tmp_path,
                code=lambda_.Code.from_inline("def handler(e, c): return e"))
    with pytest.raises(SagaDeclarationError, match="dotted path of a pydantic model"):
        SagaDefinition(name="trip", input_model="not a path",
                       steps=[Step("book_flight", action="trip.flights.book",
                                   compensation="trip.flights.cancel")])
