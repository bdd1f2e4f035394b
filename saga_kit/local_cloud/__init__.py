"""Deploy a synthesized CDK stack into moto, in-process, and run its real Lambda handlers.

See ``saga_kit/local_cloud/README.md`` for what moto does not emulate and how LocalCloud copes.
"""

from saga_kit.local_cloud.cloud import DEFAULT_TIME_DILATION, LocalCloud, StackResource
from saga_kit.local_cloud.errors import CodeConflictError, DeployError, LocalCloudError, ResourceLookupError
from saga_kit.local_cloud.lambda_runner import LambdaContext

__all__ = [
    "DEFAULT_TIME_DILATION",
    "CodeConflictError",
    "DeployError",
    "LambdaContext",
    "LocalCloud",
    "LocalCloudError",
    "ResourceLookupError",
    "StackResource",
]
