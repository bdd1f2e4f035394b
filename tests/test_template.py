"""CDK assertions on the synthesized order-fulfillment template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

import saga_kit
from saga_kit.contract import OUTPUT_KEYS, output_key, saga_outputs
from stacks.order_fulfillment import ORDER_FULFILLMENT

STEPS = [s.name for s in ORDER_FULFILLMENT.steps]


def _resolve_join(value: Any) -> str:
    parts = value["Fn::Join"][1]
    return "".join(
        p if isinstance(p, str) else f"arn:{p['Fn::GetAtt'][0]}" if "Fn::GetAtt" in p
        else "<token>" for p in parts
    )


@pytest.fixture(scope="module")
def asl(template: dict[str, Any]) -> dict[str, Any]:
    machines = [r for r in template["Resources"].values()
                if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert len(machines) == 1
    return json.loads(_resolve_join(machines[0]["Properties"]["DefinitionString"]))


@pytest.fixture(scope="module")
def cdk_template(template: dict[str, Any]) -> Template:
    return Template.from_json(template)


def test_happy_path_is_the_action_tasks_then_one_terminal_state(asl: dict[str, Any]) -> None:
    states = asl["States"]
    path, name = [], asl["StartAt"]
    while True:
        path.append(name)
        state = states[name]
        if state.get("End") or state["Type"] in ("Succeed", "Fail"):
            break
        name = state["Next"]
    assert path == [*STEPS, "SagaSucceeded"]
    assert all(states[s]["Type"] == "Task" for s in STEPS)
    assert "QueryLanguage" not in asl or asl["QueryLanguage"] == "JSONPath"


def test_each_action_has_timeout_transient_only_retry_with_full_jitter(asl: dict[str, Any]) -> None:
    for step in ORDER_FULFILLMENT.steps:
        state = asl["States"][step.name]
        assert state["TimeoutSeconds"] == step.timeout_seconds
        [retry] = state["Retry"]
        assert retry["JitterStrategy"] == "FULL"
        assert retry["MaxAttempts"] == step.effective_retry.max_attempts
        assert retry["MaxDelaySeconds"] == step.effective_retry.max_delay_seconds
        if step.kind.value == "retriable":
            assert retry["ErrorEquals"] == ["States.ALL"]
        else:
            assert "States.ALL" not in retry["ErrorEquals"]
            assert "States.Timeout" not in retry["ErrorEquals"]
            assert {"TransientStepError", "Lambda.TooManyRequestsException",
                    "Lambda.ServiceException"} <= set(retry["ErrorEquals"])
        [catch] = state["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                         "Next": f"{step.name}_failed"}
        # Only the Lambda's payload is kept, under the step's own key.
        assert state["ResultPath"] == f"$.results.{step.name}"
        assert state["Resource"].startswith("arn:")


def _compensation_walk(asl: dict[str, Any], failed_step: str) -> tuple[list[str], str]:
    states = asl["States"]
    name = states[f"{failed_step}_failed"]["Next"]
    walked = []
    while states[name]["Type"] == "Task":
        walked.append(name)
        name = states[name]["Next"]
    return walked, name


@pytest.mark.parametrize(
    ("failed_step", "compensations"),
    [
        ("reserve_inventory", ["compensate_reserve_inventory"]),
        ("charge_payment", ["compensate_charge_payment", "compensate_reserve_inventory"]),
        ("create_shipment", ["compensate_create_shipment", "compensate_charge_payment",
                             "compensate_reserve_inventory"]),
    ],
)
def test_failure_compensates_in_strict_reverse_order(
    asl: dict[str, Any], failed_step: str, compensations: list[str]
) -> None:
    walked, terminal = _compensation_walk(asl, failed_step)
    assert walked == compensations
    assert asl["States"][terminal] == {
        "Type": "Fail", "ErrorPath": "States.Format('SagaCompensated.{}', $.failure.step)",
        "CausePath": "States.JsonToString($.failure)",
    }
    recorded = asl["States"][f"{failed_step}_failed"]
    assert recorded["Parameters"]["step"] == failed_step
    assert recorded["ResultPath"] == "$.failure"


def test_steps_after_the_pivot_are_never_compensated(asl: dict[str, Any]) -> None:
    states = asl["States"]
    assert "compensate_send_confirmation" not in states
    assert states[states["send_confirmation_failed"]["Next"]]["ErrorPath"] == (
        "States.Format('ForwardRecoveryFailed.{}', $.failure.step)")


def test_failed_compensation_ends_in_compensation_failed_with_pending(asl: dict[str, Any]) -> None:
    states = asl["States"]
    expected_pending = {
        "compensate_create_shipment": ["charge_payment", "reserve_inventory"],
        "compensate_charge_payment": ["reserve_inventory"],
        "compensate_reserve_inventory": [],
    }
    for task, pending in expected_pending.items():
        [retry] = states[task]["Retry"]
        assert retry["ErrorEquals"] == ["States.ALL"]
        [catch] = states[task]["Catch"]
        record = states[catch["Next"]]
        assert record["Parameters"]["pending_compensations"] == pending
        assert record["Parameters"]["failed_compensation"] == task.removeprefix("compensate_")
        # Parked on the compensation queue, recorded as parked, then CompensationFailed.
        park = states[record["Next"]]
        assert park["Resource"].endswith(":states:::sqs:sendMessage")
        body = park["Parameters"]["MessageBody"]
        assert body["kind"] == "saga_kit.parked_compensation" and body["version"] == 2
        # Each piece of context once: the whole state (which holds the compensation failure and
        # the original failure) plus where and when it was parked, nothing repeated beside it.
        assert body["state.$"] == "$"
        assert set(body) == {"kind", "version", "saga_type", "execution_arn.$",
                             "execution_name.$", "parked_at.$", "state.$"}
        # The caught {Error, Cause} is replaced by the record under the same key, not kept.
        assert catch["ResultPath"] == record["ResultPath"] == "$.compensation_failure"
        assert "failure.$" not in record["Parameters"]
        update = states[park["Next"]]
        assert update["Resource"].endswith(":states:::dynamodb:updateItem")
        assert update["Parameters"]["Key"]["saga_id"] == {"S.$": "$$.Execution.Name"}
        assert "attribute_not_exists(#status)" in update["Parameters"]["ConditionExpression"]
        cause = states[update["Next"]]
        assert update["Catch"][0]["Next"] == update["Next"] == "CompensationFailed cause"
        assert cause["Parameters"]["failure.$"] == "$.failure"
        assert cause["Next"] == "CompensationFailed"
        assert states["CompensationFailed"]["Error"] == "CompensationFailed"
        assert states["CompensationFailed"]["CausePath"] == (
            "States.JsonToString($.compensation_failure)")


def test_handlers_are_python_with_powertools_layer_and_short_timeouts(
    cdk_template: Template, template: dict[str, Any]
) -> None:
    functions = cdk_template.find_resources("AWS::Lambda::Function")
    handlers = {k: f for k, f in functions.items()
                if "SAGA_STEP" in f["Properties"]["Environment"]["Variables"]}
    assert len(handlers) == 7  # 4 actions + 3 compensations
    # and the redrive, status-event, outcome-metrics, stuck-detector and API Lambdas
    assert len(functions) == 12
    for function in handlers.values():
        props = function["Properties"]
        assert props["Runtime"].startswith("python3.")
        layer = json.dumps(props["Layers"])
        assert "AWSLambdaPowertoolsPythonV3" in layer and "017000801446" in layer
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        step = ORDER_FULFILLMENT.step(env["SAGA_STEP"])
        assert props["Timeout"] == step.effective_lambda_timeout < step.timeout_seconds
        assert {"SAGA_IDEMPOTENCY_TABLE", "SAGA_BARRIER_TABLE", "SAGA_STEP", "SAGA_PHASE"} <= set(env)


def test_state_machine_logs_and_traces(cdk_template: Template) -> None:
    cdk_template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like(
                {"Level": "ALL", "IncludeExecutionData": True}
            ),
        },
    )


def test_tables_have_pitr_and_encryption(cdk_template: Template) -> None:
    tables = cdk_template.find_resources("AWS::DynamoDB::Table")
    assert len(tables) == 8  # idempotency, barrier, saga store, 5 participants
    for table in tables.values():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
    cdk_template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
         "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True}},
    )


def test_outputs_name_what_operators_need(template: dict[str, Any]) -> None:
    """Every saga publishes what the CLI needs under <SagaName><Name>, resolvable by saga name."""
    outputs = template["Outputs"]
    per_saga = {output_key("order_fulfillment", name) for name in OUTPUT_KEYS}
    assert per_saga <= set(outputs)
    assert output_key("order_fulfillment", "StateMachineArn") == "OrderFulfillmentStateMachineArn"
    assert outputs["OrderFulfillmentStateMachineArn"]["Value"] == {
        "Ref": next(k for k in template["Resources"] if k.startswith("OrderFulfillmentStateMachine")
                    and template["Resources"][k]["Type"] == "AWS::StepFunctions::StateMachine")}
    assert {"InventoryTableName", "PaymentsTableName", "ShipmentsTableName"} <= set(outputs)
    placeholders = {key: key for key in outputs}
    assert set(saga_outputs(placeholders, "order_fulfillment")) == set(OUTPUT_KEYS)
    assert saga_outputs(placeholders) == saga_outputs(placeholders, "order_fulfillment")
    with pytest.raises(LookupError, match="no saga 'travel'"):
        saga_outputs(placeholders, "travel")


def test_every_function_runs_the_kit_runtime_layer_of_this_version(template: dict[str, Any]) -> None:
    """The construct ships saga_kit.runtime as a layer built at synth, stamped with the version;
    the team's code asset does not contain it."""
    resources = template["Resources"]
    [layer_id] = [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::LayerVersion"]
    functions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) >= 10
    for function in functions:
        assert {"Ref": layer_id} in function["Layers"], function["Handler"]
        assert function["Environment"]["Variables"]["SAGA_KIT_VERSION"] == saga_kit.__version__


def test_compensation_queue_dlq_redrive_and_alarms(
    cdk_template: Template, template: dict[str, Any]
) -> None:
    queues = {k: q for k, q in cdk_template.find_resources("AWS::SQS::Queue").items()
              if "Parking" in k}
    assert len(queues) == 2
    [(queue_id, queue)] = [(k, q) for k, q in queues.items() if "RedrivePolicy" in q["Properties"]]
    [(dlq_id, dlq)] = [(k, q) for k, q in queues.items() if k != queue_id]
    assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 3
    assert queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": [dlq_id, "Arn"]}
    assert dlq["Properties"]["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    for props in (queue["Properties"], dlq["Properties"]):
        assert props["SqsManagedSseEnabled"] is True
        assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
    # The redrive Lambda consumes the queue with partial batch failures.
    cdk_template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    })
    cdk_template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "saga_kit.runtime.redrive.handler"})
    alarms = {k: a for k, a in cdk_template.find_resources("AWS::CloudWatch::Alarm").items()
              if "Parking" in k}
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values())
    # DLQ not empty; compensation queue not draining; a DLQ message nearing SQS's 14 days; a
    # saga refused past its parked deadline.
    assert metrics == ["ApproximateAgeOfOldestMessage", "ApproximateAgeOfOldestMessage",
                       "ApproximateNumberOfMessagesVisible", "ParkedPastDeadline"]
    for alarm in alarms.values():
        assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Properties"]["AlarmName"].startswith(
            "SagaKitOrderFulfillment-order_fulfillment-")
    [deadline] = [a["Properties"] for a in alarms.values()
                  if a["Properties"]["MetricName"] == "ParkedPastDeadline"]
    assert deadline["Namespace"] == "SagaKit" and deadline["Threshold"] == 0
    assert {d["Name"]: d["Value"] for d in deadline["Dimensions"]} == {
        "SagaType": "order_fulfillment"}
    [age] = [a["Properties"] for a in alarms.values()
             if a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
             and a["Properties"]["Threshold"] == 7 * 24 * 3600]
    assert "since it was parked or last redriven" in age["AlarmDescription"]
    [redrive] = [f["Properties"] for f in cdk_template.find_resources(
        "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "saga_kit.runtime.redrive.handler"]
    variables = redrive["Environment"]["Variables"]
    assert variables["SAGA_PARKED_DEADLINE_SECONDS"] == str(90 * 24 * 3600)
    assert {"SAGA_BARRIER_TABLE", "SAGA_IDEMPOTENCY_TABLE"} <= set(variables)
    assert {output_key("order_fulfillment", name) for name in OUTPUT_KEYS} <= set(template["Outputs"])


def test_unexpected_endings_are_counted_and_alarmed(cdk_template: Template) -> None:
    alarms = cdk_template.find_resources("AWS::CloudWatch::Alarm")
    [unexpected] = [a["Properties"] for a in alarms.values()
                    if a["Properties"].get("MetricName") == "SagaFailedUnexpectedly"]
    assert unexpected["Namespace"] == "SagaKit" and unexpected["Threshold"] == 0
    assert unexpected["Statistic"] == "Sum"
    assert {d["Name"]: d["Value"] for d in unexpected["Dimensions"]} == {
        "SagaType": "order_fulfillment"}
    assert unexpected["AlarmName"] == "SagaKitOrderFulfillment-order_fulfillment-unexpected-endings"
    # The description leads to the status-event function's log line, then to the saga.
    description = _resolve_join(unexpected["AlarmDescription"])
    assert "saga ended unexpectedly" in description
    assert "saga inspect order_fulfillment SAGA_ID --stack SagaKitOrderFulfillment" in description
    # (The stuck detector's rule is a schedule: it has no event pattern.)
    rules = [r["Properties"]["EventPattern"] for r in cdk_template.find_resources(
        "AWS::Events::Rule").values() if "EventPattern" in r["Properties"]]
    # Every ending reaches the status-event Lambda, and so does a redriven execution.
    assert any(p["detail"]["status"] == ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
               for p in rules)
    assert any(p["detail"]["status"] == ["RUNNING"]
               and p["detail"]["redriveCount"] == [{"numeric": [">", 0]}] for p in rules)


def test_alarm_topic_is_notified_when_given() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_sns as sns

    from saga_kit.cdk import Saga
    from stacks.order_fulfillment import ORDER_FULFILLMENT

    stack = Stack(App(), "WithTopic")
    topic = sns.Topic(stack, "Ops")
    saga = Saga(stack, "Order", definition=ORDER_FULFILLMENT, alarm_topic=topic,
                code=lambda_.Code.from_inline("def handler(e, c): return e"))
    alarms = Template.from_stack(stack).find_resources("AWS::CloudWatch::Alarm")
    # Every alarm of the saga (tests/test_operations_cdk.py asserts each one).
    assert len(alarms) == len(saga.alarms) == 20
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": stack.resolve(
            stack.get_logical_id(topic.node.default_child))}]
