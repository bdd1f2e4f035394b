"""SQS queues as a saga needs them: encrypted, TLS only, kept through a stack mistake."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

#: SQS's longest retention: a parked compensation waits as long as SQS allows.
MAX_RETENTION = Duration.days(14)


def durable_queue(scope: Construct, construct_id: str, *, retention: Duration = MAX_RETENTION,
                  **props: Any) -> sqs.Queue:
    """A queue with SQS-managed encryption, ``enforce_ssl`` and ``RETAIN`` (what cdk-nag and an
    audit expect). A queue of the kit holds commands or parked compensations: messages that
    must not vanish with a stack; ``props`` go to :class:`aws_cdk.aws_sqs.Queue`."""
    return sqs.Queue(scope, construct_id, encryption=sqs.QueueEncryption.SQS_MANAGED,
                     enforce_ssl=True, retention_period=retention,
                     removal_policy=RemovalPolicy.RETAIN, **props)
