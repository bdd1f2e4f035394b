"""The saga store: one DynamoDB item per saga, keyed (saga type, saga id).

The handler runtime keeps it current as each step runs (``saga_kit/runtime/store.py`` holds
the item's layout and the allowed status moves); Step Functions' execution status events fill in
what no handler sees (a forward recovery that gave up, an execution stopped or timed out), the
parking state records ``parked`` and the redrive Lambda ``compensated``. No write ever moves a
saga out of a terminal status (completed, compensated, failed).

The ``by_status`` index answers "which sagas have been compensating for more than 15 minutes"
with one query: ``status = compensating AND updated_at < <now - 15 min>``.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from saga_kit.cdk.tables import durable_table
from saga_kit.contract import STATUS_INDEX

#: Condition every status write carries; its values are ``:completed``, ``:compensated``, ``:failed``.
NOT_TERMINAL_CONDITION = (
    "attribute_not_exists(#status) OR NOT (#status IN (:completed, :compensated, :failed))"
)
#: Attributes the index carries besides the keys: enough to list stuck sagas without a GetItem.
STATUS_INDEX_ATTRIBUTES = ["current_step", "current_phase", "execution_arn", "created_at"]


class SagaStore(Construct):
    """The table behind "what happened to saga X?" and "which sagas are stuck?"."""

    def __init__(self, scope: Construct, construct_id: str, *,
                 removal_policy: RemovalPolicy = RemovalPolicy.RETAIN) -> None:
        super().__init__(scope, construct_id)
        # The stream carries each status change once: the saga outcome metrics count from it.
        self.table: dynamodb.Table = durable_table(
            self, "Table", partition_key="saga_type", sort_key="saga_id",
            ttl_attribute="expires_at", removal_policy=removal_policy,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        )
        self.table.add_global_secondary_index(
            index_name=STATUS_INDEX,
            partition_key=dynamodb.Attribute(name="status", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="updated_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=STATUS_INDEX_ATTRIBUTES,
        )

    def grant_update(self, grantee: iam.IGrantable) -> None:
        """Lets ``grantee`` update saga items (the table only: writers never need the index)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["dynamodb:UpdateItem"],
                                   resource_arns=[self.table.table_arn])

    def grant_get(self, grantee: iam.IGrantable) -> None:
        """Lets ``grantee`` read one saga item by key (the status-event function reads what an
        execution left before reopening it)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["dynamodb:GetItem"],
                                   resource_arns=[self.table.table_arn])

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """Lets ``grantee`` read saga items and query the status index."""
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["dynamodb:GetItem", "dynamodb:Query"],
            resource_arns=[self.table.table_arn, f"{self.table.table_arn}/index/{STATUS_INDEX}"],
        )

    def status_update(self, scope: Construct, state_name: str, *, saga_name: str, status: str,
                      sets: dict[str, tasks.DynamoAttributeValue]) -> tasks.DynamoUpdateItem:
        """A state machine task that moves this execution's saga to ``status`` (never out of a
        terminal one), with ``updated_at`` and ``execution_arn`` and the extra ``sets``.

        The saga id is the execution name (the runtime refuses any other).
        """
        value = tasks.DynamoAttributeValue.from_string
        names = ", ".join(f"{name} = :{name}" for name in sets)
        return tasks.DynamoUpdateItem(
            scope, state_name.replace("_", " "), state_name=state_name, table=self.table,
            key={"saga_type": value(saga_name),
                 "saga_id": value(sfn.JsonPath.string_at("$$.Execution.Name"))},
            update_expression=("SET #status = :status, execution_arn = :execution_arn, "
                               f"updated_at = :updated_at{', ' + names if names else ''}"),
            condition_expression=NOT_TERMINAL_CONDITION,
            expression_attribute_names={"#status": "status"},
            expression_attribute_values={
                ":status": value(status),
                ":execution_arn": value(sfn.JsonPath.string_at("$$.Execution.Id")),
                ":updated_at": value(sfn.JsonPath.string_at("$$.State.EnteredTime")),
                **{f":{name}": attribute for name, attribute in sets.items()},
                ":completed": value("completed"),
                ":compensated": value("compensated"),
                ":failed": value("failed"),
            },
            result_path=sfn.JsonPath.DISCARD,
        )
