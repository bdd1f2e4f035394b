"""IAM enforcement without a deployment: which permissions a request needs, how policies are
evaluated, and the enforcer against moto's real STS, IAM and DynamoDB."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from saga_kit.local_cloud.iam import IamEnforcer, evaluate, requested_permissions

ACCOUNT = "123456789012"
REGION = "us-east-1"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Orders"


def _request(body: dict[str, Any] | None = None, uri: str = "") -> Any:
    """The attributes of moto's response object that the resolver reads."""
    return SimpleNamespace(raw_body=json.dumps(body or {}).encode(), uri=uri)


def _needs(service: str, action: str, request: Any, moto_resource: str = "*") -> list[tuple[str, Any]]:
    return requested_permissions(service, action, request, moto_resource, "aws", REGION, ACCOUNT)


def test_dynamodb_requests_name_tables_and_indexes() -> None:
    assert _needs("dynamodb", "PutItem", _request({"TableName": "Orders"})) == [
        ("dynamodb:PutItem", TABLE_ARN)]
    assert _needs("dynamodb", "Query", _request({"TableName": "Orders", "IndexName": "by_status"})) == [
        ("dynamodb:Query", f"{TABLE_ARN}/index/by_status")]
    assert _needs("dynamodb", "GetItem", _request({"TableName": TABLE_ARN})) == [
        ("dynamodb:GetItem", TABLE_ARN)]
    assert _needs("dynamodb", "BatchWriteItem", _request({"RequestItems": {"Orders": [], "Stock": []}})) == [
        ("dynamodb:BatchWriteItem", TABLE_ARN),
        ("dynamodb:BatchWriteItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Stock")]
    assert _needs("dynamodb", "ListTables", _request()) == [("dynamodb:ListTables", "*")]


def test_a_transaction_needs_each_items_own_action() -> None:
    body = {"TransactItems": [
        {"Put": {"TableName": "Orders", "Item": {}}},
        {"Update": {"TableName": "Stock", "Key": {}}},
        {"ConditionCheck": {"TableName": "Orders", "Key": {}}},
        {"Delete": {"TableName": "Orders", "Key": {}}},
    ]}
    stock = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Stock"
    assert _needs("dynamodb", "TransactWriteItems", _request(body)) == [
        ("dynamodb:PutItem", TABLE_ARN), ("dynamodb:UpdateItem", stock),
        ("dynamodb:ConditionCheckItem", TABLE_ARN), ("dynamodb:DeleteItem", TABLE_ARN)]
    assert _needs("dynamodb", "TransactGetItems",
                  _request({"TransactItems": [{"Get": {"TableName": "Orders"}}]})) == [
        ("dynamodb:GetItem", TABLE_ARN)]


def test_lambda_invoke_is_invoke_function_on_the_function_arn() -> None:
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:compensate"
    base = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions"
    assert _needs("lambda", "Invoke", _request(uri=f"{base}/compensate/invocations")) == [
        ("lambda:InvokeFunction", function_arn)]
    encoded = function_arn.replace(":", "%3A")
    assert _needs("lambda", "Invoke", _request(uri=f"{base}/{encoded}/invocations?Qualifier=live")) == [
        ("lambda:InvokeFunction", f"{function_arn}:live")]
    assert _needs("lambda", "Invoke", _request(uri=f"{base}/compensate:3/invocations")) == [
        ("lambda:InvokeFunction", f"{function_arn}:3")]


def test_step_functions_and_sqs() -> None:
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Saga"
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Saga:run-1"
    assert _needs("states", "StartExecution", _request({"stateMachineArn": machine, "name": "x"})) == [
        ("states:StartExecution", machine)]
    assert _needs("states", "DescribeExecution", _request({"executionArn": execution})) == [
        ("states:DescribeExecution", execution)]
    assert _needs("states", "SendTaskSuccess", _request({"taskToken": "t"})) == [
        ("states:SendTaskSuccess", None)]
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:parked"
    assert _needs("sqs", "SendMessageBatch", _request(), moto_resource=queue) == [("sqs:SendMessage", queue)]
    assert _needs("sns", "Publish", _request()) == [("sns:Publish", None)]


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_policy_evaluation() -> None:
    grant = _policy({"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
                     "Resource": [TABLE_ARN, f"{TABLE_ARN}/index/by_status"]})
    assert evaluate([grant], "dynamodb:Query", f"{TABLE_ARN}/index/by_status") == "allow"
    assert evaluate([grant], "dynamodb:Query", f"{TABLE_ARN}/index/other") == "implicit"
    assert evaluate([grant], "DynamoDB:getitem", TABLE_ARN) == "allow"  # actions ignore case
    assert evaluate([grant], "dynamodb:PutItem", TABLE_ARN) == "implicit"
    # A table grant does not cover its indexes (CDK adds .../index/* when the table has any).
    assert evaluate([_policy({"Effect": "Allow", "Action": "dynamodb:Query", "Resource": TABLE_ARN})],
                    "dynamodb:Query", f"{TABLE_ARN}/index/by_status") == "implicit"
    wildcard = _policy({"Effect": "Allow", "Action": "dynamodb:*",
                        "Resource": "arn:aws:dynamodb:*:*:table/Ord?rs"})
    assert evaluate([wildcard], "dynamodb:PutItem", TABLE_ARN) == "allow"
    # "." is literal, not a regex wildcard.
    dotted = _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a.b/*"})
    assert evaluate([dotted], "s3:GetObject", "arn:aws:s3:::axb/k") == "implicit"
    deny = _policy({"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": "*"})
    assert evaluate([wildcard, deny], "dynamodb:DeleteItem", TABLE_ARN) == "deny"
    everything_but = _policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert evaluate([everything_but], "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q") == "allow"
    assert evaluate([everything_but], "iam:PassRole", "*") == "implicit"


def test_unresolved_resources_and_conditions_never_invent_a_denial() -> None:
    scoped = _policy({"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:aws:sns:us-east-1:1:t"})
    assert evaluate([scoped], "sns:Publish", None) == "allow"  # only the action is checked
    assert evaluate([scoped], "sns:Subscribe", None) == "implicit"
    scoped_deny = _policy({"Effect": "Deny", "Action": "sns:Publish",
                           "Resource": "arn:aws:sns:us-east-1:1:t"})
    assert evaluate([scoped, scoped_deny], "sns:Publish", None) == "allow"
    conditional = _policy(
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE_ARN,
         "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["u-1"]}}},
        {"Effect": "Deny", "Action": "dynamodb:GetItem", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    )
    assert evaluate([conditional], "dynamodb:GetItem", TABLE_ARN) == "allow"


# -- the enforcer against moto ----------------------------------------------------------------


@pytest.fixture()
def moto_with_iam(monkeypatch: pytest.MonkeyPatch) -> Iterator[IamEnforcer]:
    """moto with an enforcer installed, and two tables (one with an index)."""
    import moto

    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    with moto.mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for name in ("Orders", "Stock"):
            dynamodb.create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "status", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                GlobalSecondaryIndexes=[{"IndexName": "by_status",
                                         "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                                         "Projection": {"ProjectionType": "ALL"}}],
            )
        enforcer = IamEnforcer()
        with enforcer.installed():
            yield enforcer


def _function(name: str, statements: list[dict[str, Any]]) -> Any:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(_policy(
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})))
    iam.put_role_policy(RoleName=f"{name}-role", PolicyName="grants",
                        PolicyDocument=json.dumps(_policy(*statements)))
    return SimpleNamespace(function_name=name, role=role["Role"]["Arn"], region=REGION, account_id=ACCOUNT)


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_requests_in_an_invocation_act_as_the_function(moto_with_iam: IamEnforcer) -> None:
    enforcer = moto_with_iam
    reader = _function("reader", [{"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:Query"],
                                   "Resource": TABLE_ARN}])
    credentials = enforcer.credentials_for(reader)
    assert enforcer.credentials_for(reader) is credentials  # assumed once
    assert credentials.principal_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/reader-role/reader"
    shared = boto3.client("dynamodb", region_name=REGION)  # created by the harness, shared

    with enforcer.acting_as(credentials):
        shared.put_item(TableName="Orders", Item={"pk": {"S": "1"}, "status": {"S": "new"}})
        with pytest.raises(ClientError) as stock:
            shared.put_item(TableName="Stock", Item={"pk": {"S": "1"}})
        with pytest.raises(ClientError) as index:
            shared.query(TableName="Orders", IndexName="by_status",
                         KeyConditionExpression="#s = :s", ExpressionAttributeNames={"#s": "status"},
                         ExpressionAttributeValues={":s": {"S": "new"}})

    assert _code(stock.value) == "AccessDeniedException"
    assert stock.value.response["Error"]["Message"] == (
        f"User: {credentials.principal_arn} is not authorized to perform: dynamodb:PutItem on "
        f"resource: arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Stock because no identity-based "
        "policy allows the dynamodb:PutItem action")
    assert _code(index.value) == "AccessDeniedException"
    assert [d.resource for d in enforcer.denials] == [
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Stock", f"{TABLE_ARN}/index/by_status"]
    # The harness is never checked, with the same client...
    shared.put_item(TableName="Stock", Item={"pk": {"S": "harness"}})
    # ...nor with a client that picked up the function's keys (as boto3's default session
    # caches the first credentials it finds, maybe inside an invocation).
    leaked = boto3.client("dynamodb", region_name=REGION, aws_access_key_id=credentials.access_key_id,
                          aws_secret_access_key=credentials.secret_access_key,
                          aws_session_token=credentials.session_token)
    assert {"Orders", "Stock"} <= set(leaked.list_tables()["TableNames"])
    # Who am I is always allowed, as on AWS.
    with enforcer.acting_as(credentials):
        identity = boto3.client("sts", region_name=REGION).get_caller_identity()
    assert identity["Arn"] == credentials.principal_arn


def test_nested_invocations_and_other_threads(moto_with_iam: IamEnforcer) -> None:
    enforcer = moto_with_iam
    outer = enforcer.credentials_for(_function("outer", [
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE_ARN}]))
    inner = enforcer.credentials_for(_function("inner", [
        {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": TABLE_ARN}]))
    client = boto3.client("dynamodb", region_name=REGION)
    other_thread: list[BaseException | None] = []

    def harness_thread() -> None:
        try:
            client.put_item(TableName="Orders", Item={"pk": {"S": "thread"}})
            other_thread.append(None)
        except BaseException as exc:
            other_thread.append(exc)

    with enforcer.acting_as(outer):
        with enforcer.acting_as(inner):  # a synchronous invoke of another function
            client.put_item(TableName="Orders", Item={"pk": {"S": "inner"}})
            worker = threading.Thread(target=harness_thread)
            worker.start()
            worker.join()
        with pytest.raises(ClientError, match="assumed-role/outer-role/outer"):
            client.put_item(TableName="Orders", Item={"pk": {"S": "outer"}})
    assert other_thread == [None]


def test_install_and_uninstall_restore_botocore_and_moto() -> None:
    from botocore.signers import RequestSigner
    from moto.core.authorization import ActionAuthenticatorMixin

    before = (RequestSigner.__dict__["get_auth_instance"],
              ActionAuthenticatorMixin.__dict__["_authenticate_and_authorize_action"])
    with IamEnforcer().installed():
        assert RequestSigner.__dict__["get_auth_instance"] is not before[0]
    assert (RequestSigner.__dict__["get_auth_instance"],
            ActionAuthenticatorMixin.__dict__["_authenticate_and_authorize_action"]) == before
