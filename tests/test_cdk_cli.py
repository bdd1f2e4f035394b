"""The real ``cdk`` command synthesizes the app, as ``npx aws-cdk@2 deploy`` would before deploying."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CDK_CACHE = ROOT / ".cache" / "aws-cdk"
#: The CDK CLI version this suite was run with (README: ``npx aws-cdk@2``).
CDK_CLI_VERSION = "2.1148.1"


def cdk_command() -> Path:
    """The aws-cdk@2 CLI, installed from the npm registry once and kept under .cache/."""
    binary = CDK_CACHE / "node_modules" / ".bin" / "cdk"
    installed = CDK_CACHE / "node_modules" / "aws-cdk" / "package.json"
    if not binary.exists() or json.loads(installed.read_text())["version"] != CDK_CLI_VERSION:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is required (Node 20): the README's prerequisites")
        CDK_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CDK_CACHE),
             f"aws-cdk@{CDK_CLI_VERSION}"],
            check=True, capture_output=True, text=True,
        )
    return binary


def test_cdk_cli_synth(tmp_path: Path) -> None:
    outdir = tmp_path / "cdk.out"
    run = subprocess.run(
        [str(cdk_command()), "synth", "--quiet", "--no-notices", "--output", str(outdir),
         "--app", f"{sys.executable} app.py"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
             "CDK_DISABLE_CLI_TELEMETRY": "true"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    template = json.loads((outdir / "SagaKitOrderFulfillment.template.json").read_text())
    types = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::StepFunctions::StateMachine" in types
