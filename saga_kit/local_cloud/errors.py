"""Errors raised by LocalCloud itself (not by the code it runs)."""

from __future__ import annotations


class LocalCloudError(Exception):
    """Something about the assembly, the deployment or LocalCloud's own use is wrong."""


class DeployError(LocalCloudError):
    """The stack did not reach CREATE_COMPLETE in moto; the message names the resource and why."""


class CodeConflictError(LocalCloudError):
    """Two Lambda code zips provide the same top-level Python name with different contents.

    In-process there is one ``sys.modules``, so only one copy could ever be imported; using the
    first silently would run the wrong code for the other function.
    """


class ResourceLookupError(LocalCloudError, LookupError):
    """``physical_id`` matched no resource, or more than one."""
