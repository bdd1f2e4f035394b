"""cdk-nag in one line: ``enable_cdk_nag(app)`` before ``app.synth()``.

cdk-nag 3 runs as a CDK validation plugin: any unacknowledged AwsSolutions finding makes
``app.synth()`` (and ``cdk synth`` / ``cdk deploy``) fail, and the report is written to
``cdk.out/validation-report.json``. The findings the kit's own constructs accept on purpose are
acknowledged where those constructs are, with their reasons; findings on the team's own
resources are theirs to fix or to acknowledge with :func:`acknowledge`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def enable_cdk_nag(app: App, *, verbose: bool = False) -> App:
    """Runs cdk-nag's AwsSolutions rules on every stack of ``app`` at synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=verbose or None))
    return app


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accepts one cdk-nag finding on ``scope`` and everything below it, with the reason.

    ``rule`` is the rule id (``"AwsSolutions-IAM5"``) or a finding id with its detail
    (``"AwsSolutions-IAM5[Resource::*]"``), as the validation report prints it.
    """
    rule_id = rule if rule.startswith("AwsSolutions::") else f"AwsSolutions::{rule}"
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
