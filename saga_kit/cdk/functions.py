"""How every Lambda function of a saga is built: one runtime, the Powertools layer, the kit's
runtime layer, a version stamp, logs kept three months and X-Ray on.

:class:`SagaKitRuntime` is created once per stack (``SagaKitRuntime.of(scope)``), so the sagas of
one stack share one runtime layer and one kit code asset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

import saga_kit
from saga_kit.cdk.runtime_asset import staged_runtime
from saga_kit.contract import Env

#: Version of the AWS-managed "Powertools for AWS Lambda (Python) V3" layer. Override with the
#: CDK context key ``powertools_layer_version`` when a newer layer is published.
POWERTOOLS_LAYER_VERSION = "27"
#: Account that publishes the AWS-managed Powertools layers in every commercial region.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
#: Construct id of the per-stack singleton.
_SINGLETON_ID = "SagaKitRuntime"


class SagaKitRuntime(Construct):
    """The layers and code every saga function of one stack runs with.

    Attributes:
        powertools_layer: The AWS-managed Powertools layer (it also brings pydantic).
        runtime_layer: ``saga_kit.runtime`` of the installed Saga Kit, staged at synth.
        kit_code: The same files as a function's own code, for the kit's own functions.
        version: The Saga Kit version that synthesized the stack; every function gets it as
            ``SAGA_KIT_VERSION`` and the runtime refuses to run under another.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.version = saga_kit.__version__
        self.lambda_runtime = LAMBDA_RUNTIME
        layer_version = self.node.try_get_context("powertools_layer_version") or (
            POWERTOOLS_LAYER_VERSION
        )
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
            f"AWSLambdaPowertoolsPythonV3-{LAMBDA_RUNTIME.name.replace('.', '')}-x86_64:"
            f"{layer_version}",
        )
        self.runtime_layer = lambda_.LayerVersion(
            self,
            "RuntimeLayer",
            code=lambda_.Code.from_asset(str(staged_runtime(as_layer=True))),
            compatible_runtimes=[LAMBDA_RUNTIME],
            description=f"Saga Kit {self.version} handler runtime (saga_kit.runtime)",
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.kit_code = lambda_.Code.from_asset(str(staged_runtime(as_layer=False)))

    @classmethod
    def of(cls, scope: Construct) -> SagaKitRuntime:
        """The stack's runtime, created on first use."""
        stack = Stack.of(scope)
        found = stack.node.try_find_child(_SINGLETON_ID)
        if isinstance(found, SagaKitRuntime):
            return found
        return cls(stack, _SINGLETON_ID)

    @property
    def layers(self) -> list[lambda_.ILayerVersion]:
        """What every saga function is given: Powertools, then Saga Kit's runtime."""
        return [self.powertools_layer, self.runtime_layer]

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        timeout: Duration,
        environment: Mapping[str, str],
        description: str,
        code: lambda_.Code | None = None,
        memory_size: int = 256,
        extra_layers: Sequence[lambda_.ILayerVersion] = (),
    ) -> lambda_.Function:
        """A Lambda function with the kit's runtime and layers.

        ``code`` defaults to the kit's own code asset (for the kit's own functions); a team's
        handlers pass their own code, which then needs only their participants.
        """
        return lambda_.Function(
            scope,
            construct_id,
            runtime=self.lambda_runtime,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=code or self.kit_code,
            timeout=timeout,
            memory_size=memory_size,
            layers=[*self.layers, *extra_layers],
            environment={**environment, Env.KIT_VERSION: self.version},
            log_group=logs.LogGroup(scope, f"{construct_id}Logs",
                                    retention=logs.RetentionDays.THREE_MONTHS,
                                    removal_policy=RemovalPolicy.DESTROY),
            tracing=lambda_.Tracing.ACTIVE,
            description=description,
        )
