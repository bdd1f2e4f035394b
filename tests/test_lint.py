"""cfn-lint and cdk-nag on every synthesized template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sqs as sqs

from saga_kit.cdk import enable_cdk_nag


def test_cfn_lint_has_no_errors_or_warnings(assembly_dir: Path) -> None:
    templates = sorted(assembly_dir.glob("*.template.json"))
    assert templates, "no template synthesized"
    # W3005 (redundant DependsOn) is raised by every CDK template; nothing else is ignored.
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    run = subprocess.run(
        [cfn_lint, "--ignore-checks", "W3005", "--", *map(str, templates)],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == ""


def test_cdk_nag_findings_are_all_acknowledged_with_a_reason(assembly_dir: Path) -> None:
    # Synthesis with the AwsSolutions plugin succeeded (the fixture), and its report says why each
    # accepted finding is accepted.
    report = json.loads((assembly_dir / "validation-report.json").read_text())
    [nag] = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    accepted = {v["ruleName"].split("[")[0] for v in nag["suppressedViolations"]}
    # IAM: managed logging policies, X-Ray and '<arn>:*' of the saga's own resources;
    # APIG3: WAF left to the account; COG4: IAM auth instead of Cognito; SQS3: the status-event
    # DLQ is itself a dead-letter queue.
    assert accepted == {"AwsSolutions-IAM4", "AwsSolutions-IAM5", "AwsSolutions-APIG3",
                        "AwsSolutions-COG4", "AwsSolutions-SQS3"}
    for violation in nag["suppressedViolations"]:
        assert len(violation["reason"]) > 40, violation["ruleName"]


def test_cdk_nag_really_runs(tmp_path: Path) -> None:
    """An unencrypted queue without a DLQ must fail synthesis: proof the checks are wired."""
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Careless")
    sqs.Queue(stack, "Queue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    enable_cdk_nag(app)
    with pytest.raises(RuntimeError, match="AwsSolutions-SQS2"):
        app.synth()
    assert "AwsSolutions-SQS" in (tmp_path / "validation-report.json").read_text()
