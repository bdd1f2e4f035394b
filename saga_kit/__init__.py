"""Saga Kit: distributed transactions for AWS without two-phase commit, as sagas on Step Functions.

The package is split by where the code runs; import what you need from the part you need:

* :mod:`saga_kit.cdk` declares sagas and deploys them (needs ``aws-cdk-lib``: ``saga-kit[cdk]``);
* :mod:`saga_kit.runtime` is what every action and compensation Lambda is built on (Powertools and
  boto3 only; the ``Saga`` construct ships it to Lambda as a layer);
* :mod:`saga_kit.local_cloud` deploys a synthesized stack into moto and runs the real handlers
  (``saga-kit[local]``);
* :mod:`saga_kit.cli` is the ``saga`` command (``saga-kit[cli]``);
* :mod:`saga_kit.contract` holds the names and limits the parts above agree on.

This module imports nothing, so the Lambda runtime pays nothing for it.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
