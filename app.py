#!/usr/bin/env python3
"""The Saga Kit CDK app: ``npx aws-cdk@2 synth`` / ``deploy`` run this file (see cdk.json)."""

from stacks.app_factory import build_app

if __name__ == "__main__":
    build_app().synth()
