"""The saga store: one DynamoDB item per saga, keyed (saga type, saga id).

Kept current without extra states on the happy path: the failure paths of the state machine and
the redrive Lambda write to it. A terminal status (completed, compensated, failed) is never
overwritten: every write carries :data:`NOT_TERMINAL_CONDITION`.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from stacks.saga.tables import durable_table

#: Condition every status write carries; its values are ``:completed``, ``:compensated``, ``:failed``.
NOT_TERMINAL_CONDITION = (
    "attribute_not_exists(#status) OR NOT (#status IN (:completed, :compensated, :failed))"
)


class SagaStore(Construct):
    """The table behind "what happened to saga X?"."""

    def __init__(self, scope: Construct, construct_id: str, *,
                 removal_policy: RemovalPolicy = RemovalPolicy.RETAIN) -> None:
        super().__init__(scope, construct_id)
        self.table: dynamodb.Table = durable_table(
            self, "Table", partition_key="saga_type", sort_key="saga_id",
            ttl_attribute="expires_at", removal_policy=removal_policy,
        )
