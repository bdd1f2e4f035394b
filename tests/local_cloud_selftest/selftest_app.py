"""A tiny CDK app for LocalCloud's self-test: a table, a Python Lambda, a state machine; and for
the layer and IAM checks, a function without a grant on the table, and one handler deployed
with and without the layer it imports from."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

STACK_NAME = "LocalCloudSelfTest"
HANDLER_DIR = Path(__file__).parent / "handler_src"
LAYER_DIR = Path(__file__).parent / "layer_src"
#: The AWS-managed Powertools layer, which moto does not have (LocalCloud stands in for it).
POWERTOOLS_LAYER_ARN = (
    f"arn:{cdk.Aws.PARTITION}:lambda:{cdk.Aws.REGION}:017000801446:layer:"
    "AWSLambdaPowertoolsPythonV3-python311-x86_64:27"
)
TASK_TIMEOUT_SECONDS = 1


def synth_selftest_app(outdir: Path) -> Path:
    """Synthesize the self-test stack into ``outdir`` and return the assembly directory."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, STACK_NAME, env=cdk.Environment(region="us-east-1"))
    table = dynamodb.Table(
        stack,
        "Items",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    fn = lambda_.Function(
        stack,
        "Worker",
        runtime=lambda_.Runtime.PYTHON_3_11,
        handler="selftest_handler.app.handler",
        code=lambda_.Code.from_asset(str(HANDLER_DIR)),
        timeout=cdk.Duration.seconds(10),
        environment={"TABLE_NAME": table.table_name},
    )
    table.grant_read_write_data(fn)
    invoke = tasks.LambdaInvoke(
        stack,
        "Work",
        lambda_function=fn,
        payload_response_only=True,
        retry_on_service_exceptions=False,
        task_timeout=sfn.Timeout.duration(cdk.Duration.seconds(TASK_TIMEOUT_SECONDS)),
    )
    invoke.add_retry(
        errors=["FlakyError"],
        interval=cdk.Duration.seconds(5),
        max_attempts=3,
        backoff_rate=2,
    )
    machine = sfn.StateMachine(stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(invoke))

    # The same handler as Worker, but its role has no grant on the table.
    lambda_.Function(
        stack,
        "Ungranted",
        runtime=lambda_.Runtime.PYTHON_3_11,
        handler="selftest_handler.app.handler",
        code=lambda_.Code.from_asset(str(HANDLER_DIR)),
        timeout=cdk.Duration.seconds(10),
        environment={"TABLE_NAME": table.table_name},
    )
    # One handler importing from two layers, deployed with both and with Powertools only.
    powertools = lambda_.LayerVersion.from_layer_version_arn(stack, "Powertools", POWERTOOLS_LAYER_ARN)
    extra = lambda_.LayerVersion(stack, "ExtraLayer", code=lambda_.Code.from_asset(str(LAYER_DIR)),
                                 compatible_runtimes=[lambda_.Runtime.PYTHON_3_11])
    for construct_id, layers in (("LayeredWith", [powertools, extra]), ("LayeredWithout", [powertools])):
        lambda_.Function(
            stack,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_11,
            handler="selftest_layered.app.handler",
            code=lambda_.Code.from_asset(str(HANDLER_DIR)),
            layers=layers,
        )
    cdk.CfnOutput(stack, "TableName", value=table.table_name)
    # Named as a saga's output (<Saga>StateMachineArn), so cloud.saga_outputs() finds it.
    cdk.CfnOutput(stack, "SelftestStateMachineArn", value=machine.state_machine_arn)
    return Path(app.synth().directory)
