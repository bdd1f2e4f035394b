"""``SagaApi``: the front door. One REST API in front of every saga of the app.

* ``POST /sagas/<type>``: a request model generated from the saga's pydantic input model and a
  request validator refuse a bad body at the gateway (``400`` naming the field); the
  ``Idempotency-Key`` header is required there too. The Lambda handler
  (``saga_kit.runtime.api``) applies the same model again and starts the execution with the key as
  its name, so a client retry never starts a second saga.
* ``GET /sagas/<type>/<saga id>``: the saga's status and step log from the saga store.
* ``/sagas/{saga_type}`` catches every other type, so an unknown type answers ``404`` naming
  the known ones instead of API Gateway's ``403 Missing Authentication Token``.

IAM authorization (SigV4) on every method by default; API keys with a usage plan on request;
stage throttling, JSON access logs, execution logs and X-Ray tracing always.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from aws_cdk import Acknowledgment, Aws, CfnOutput, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from saga_kit.cdk.construct import Saga
from saga_kit.cdk.functions import SagaKitRuntime
from saga_kit.cdk.input_schema import request_model_schema
from saga_kit.contract import DEFAULT_MAX_BODY_BYTES, IDEMPOTENCY_HEADER, Env, pascal_name

#: How gateway-side refusals read: the same ``{"message": ...}`` shape the handler answers with.
GATEWAY_RESPONSES = {
    apigw.ResponseType.BAD_REQUEST_BODY: (
        "400", '{"message": "the body does not match the saga input: '
               '$util.escapeJavaScript($context.error.validationErrorString)"}'),
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: (
        "400", '{"message": "$util.escapeJavaScript($context.error.message)"}'),
    apigw.ResponseType.REQUEST_TOO_LARGE: (
        "413", '{"message": "$util.escapeJavaScript($context.error.message)"}'),
    apigw.ResponseType.THROTTLED: (
        "429", '{"message": "too many requests; retry with the same Idempotency-Key"}'),
}


class ApiAuthorization(StrEnum):
    """How callers authenticate."""

    #: SigV4-signed requests from principals allowed ``execute-api:Invoke`` (the default).
    IAM = "iam"
    #: An ``x-api-key`` header from a usage plan, on top of IAM.
    IAM_AND_API_KEY = "iam_and_api_key"
    #: An ``x-api-key`` header only: for clients that cannot sign requests.
    API_KEY = "api_key"


class SagaApi(Construct):
    """A REST API that starts and queries the given sagas.

    Args:
        sagas: The sagas to serve; each one's type is its declared name.
        code: The team's Lambda code holding the sagas' input models (the runtime comes as a
            layer, as for the saga's own handlers).
        handlers_dir: The directory ``code`` was built from (input models are read from it at
            synth to generate the gateway's request models).
        authorization: IAM (default), IAM plus API key, or API key only.
        throttling_rate_limit: Steady requests per second for the stage.
        throttling_burst_limit: Burst requests for the stage.
        max_body_bytes: Largest start request body accepted (``413`` above).
        require_idempotency_key: Refuse a start without an ``Idempotency-Key`` (``400``).
            Without it, a start gets a random saga id, and a client retry starts a second saga.
        stage_name: The deployment stage.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        sagas: Sequence[Saga],
        code: lambda_.Code,
        handlers_dir: Path,
        authorization: ApiAuthorization = ApiAuthorization.IAM,
        throttling_rate_limit: int = 50,
        throttling_burst_limit: int = 100,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        require_idempotency_key: bool = True,
        stage_name: str = "prod",
    ) -> None:
        super().__init__(scope, construct_id)
        if not sagas:
            raise ValueError("SagaApi needs at least one saga")
        stack = Stack.of(self)
        self.function = SagaKitRuntime.of(self).function(
            self,
            "Handler",
            handler="saga_kit.runtime.api.handler",
            code=code,
            timeout=Duration.seconds(10),
            memory_size=512,
            environment={
                Env.API_ROUTES: stack.to_json_string({
                    saga.definition.name: {
                        "state_machine_arn": saga.state_machine.state_machine_arn,
                        "store_table": saga.store.table.table_name,
                        "input_model": saga.definition.input_model,
                    } for saga in sagas
                }),
                Env.API_MAX_BODY_BYTES: str(max_body_bytes),
                Env.API_REQUIRE_IDEMPOTENCY_KEY: "true" if require_idempotency_key else "false",
                "POWERTOOLS_SERVICE_NAME": "saga_api",
            },
            description="Saga API: starts sagas and reports their status",
        )
        for saga in sagas:
            saga.state_machine.grant_start_execution(self.function)
            self.function.add_to_role_policy(iam.PolicyStatement(
                actions=["states:DescribeExecution"],
                resources=[f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:"
                           f"{saga.state_machine.state_machine_name}:*"],
            ))
            saga.store.grant_read(self.function)
            saga.store.grant_update(self.function)
            logical_id = stack.resolve(stack.get_logical_id(
                saga.state_machine.node.default_child))
            Validations.of(self.function).acknowledge(Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:"
                   f"<AWS::Region>:<AWS::AccountId>:execution:<{logical_id}.Name>:*]",
                reason="Describing any execution of the saga's own state machine: execution "
                       "names are the saga ids, known only at run time.",
            ))

        self.access_logs = logs.LogGroup(self, "AccessLogs",
                                         retention=logs.RetentionDays.THREE_MONTHS,
                                         removal_policy=RemovalPolicy.DESTROY)
        use_iam = authorization in (ApiAuthorization.IAM, ApiAuthorization.IAM_AND_API_KEY)
        use_keys = authorization in (ApiAuthorization.API_KEY, ApiAuthorization.IAM_AND_API_KEY)
        self.api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{stack.stack_name}-sagas",
            description="Start sagas and ask what happened to them.",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=throttling_rate_limit,
                throttling_burst_limit=throttling_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=(apigw.AuthorizationType.IAM if use_iam
                                    else apigw.AuthorizationType.NONE),
                api_key_required=use_keys,
            ),
        )
        for response_type, (status, template) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{response_type.response_type}Response", type=response_type, status_code=status,
                templates={"application/json": template})
        self.validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True)
        integration = apigw.LambdaIntegration(self.function, proxy=True)
        key_param = {f"method.request.header.{IDEMPOTENCY_HEADER}": require_idempotency_key}

        sagas_resource = self.api.root.add_resource("sagas")
        for saga in sagas:
            name = saga.definition.name
            model = apigw.CfnModel(
                self, f"{pascal_name(name)}InputModel",
                rest_api_id=self.api.rest_api_id,
                content_type="application/json",
                name=f"{pascal_name(name)}Input",
                description=f"The input of a {name} saga",
                schema=request_model_schema(saga.definition, handlers_dir),
            )
            typed = sagas_resource.add_resource(name)
            typed.add_method(
                "POST", integration,
                request_validator=self.validator,
                request_parameters=key_param,
                request_models={"application/json": apigw.Model.from_model_name(
                    self, f"{pascal_name(name)}InputModelRef", model.ref)},
            ).node.add_dependency(model)
            typed.add_resource("{saga_id}").add_method("GET", integration)
        # Every other saga type: the handler answers 404 naming the known ones.
        any_type = sagas_resource.add_resource("{saga_type}")
        any_type.add_method("POST", integration)
        any_type.add_resource("{saga_id}").add_method("GET", integration)

        self.api_key: apigw.IApiKey | None = None
        if use_keys:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                throttle=apigw.ThrottleSettings(rate_limit=throttling_rate_limit,
                                                burst_limit=throttling_burst_limit))
            plan.add_api_stage(stage=self.api.deployment_stage)
            self.api_key = self.api.add_api_key("ApiKey")
            plan.add_api_key(self.api_key)
        self._acknowledge_nag_findings(use_iam)
        CfnOutput(self, "Url", value=self.api.url, key="ApiUrl",
                  description="Base URL of the saga API (POST sagas/<type>, GET sagas/<type>/<id>)")
        CfnOutput(self, "Id", value=self.api.rest_api_id, key="ApiId")
        CfnOutput(self, "Routes", key="ApiRoutes",
                  value=json.dumps(sorted(s.definition.name for s in sagas)))

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Lets ``grantee`` call every route of the API (IAM authorization)."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["execute-api:Invoke"],
            resource_arns=[self.api.arn_for_execute_api()])

    def _acknowledge_nag_findings(self, use_iam: bool) -> None:
        findings = {
            "AwsSolutions::AwsSolutions-APIG3": "WAF is an account-level choice with its own cost; "
            "attach a web ACL to the stage where the API is public.",
            "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "service-role/AmazonAPIGatewayPushToCloudWatchLogs]":
                "The AWS-managed policy API Gateway needs to write execution logs.",
        }
        if use_iam:
            findings["AwsSolutions::AwsSolutions-COG4"] = (
                "Callers authenticate with IAM (SigV4), not a Cognito user pool.")
        for rule, reason in findings.items():
            Validations.of(self.api).acknowledge(Acknowledgment(id=rule, reason=reason))
        for rule, reason in (
            ("AwsSolutions::AwsSolutions-IAM5[Resource::*]",
             "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions."),
            ("AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
             "service-role/AWSLambdaBasicExecutionRole]",
             "AWSLambdaBasicExecutionRole only lets the function write its own CloudWatch Logs."),
        ):
            Validations.of(self.function).acknowledge(Acknowledgment(id=rule, reason=reason))

