#!/usr/bin/env python3
"""The Saga Kit CDK app: ``npx aws-cdk@2 synth`` / ``deploy`` run this file (see cdk.json)."""

import os

# Node 20 is the kit's documented prerequisite; jsii's end-of-life banner for it is noise here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from stacks.app_factory import build_app

if __name__ == "__main__":
    build_app().synth()
