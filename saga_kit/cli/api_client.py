"""A client of the saga API, for a deployed stack (SigV4-signed) or ``saga serve``.

Example::

    client = SagaApiClient.for_stack("MyStack")                      # reads the ApiUrl output
    client = SagaApiClient("http://127.0.0.1:8000")                  # saga serve
    answer = client.start("order_fulfillment", {...}, idempotency_key="order-42")
    answer = client.status("order_fulfillment", "order-42")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from saga_kit.contract import IDEMPOTENCY_HEADER

DEFAULT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class ApiAnswer:
    """One answer of the API: HTTP status and JSON body."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        """Whether the API accepted the request (2xx)."""
        return 200 <= self.status < 300


class SagaApiClient:
    """Calls ``POST /sagas/{type}`` and ``GET /sagas/{type}/{id}``.

    Requests are signed with SigV4 (service ``execute-api``) when the session has credentials,
    which is what the deployed API's IAM authorization requires; ``saga serve`` accepts them
    signed or not.

    Args:
        base_url: The API's base URL, stage included (the stack output ``ApiUrl``).
        session: The boto3 session whose credentials sign requests (default: a new one).
        api_key: Sent as ``x-api-key`` for APIs deployed with API keys.
        sign: Set ``False`` to never sign.
    """

    def __init__(self, base_url: str, *, session: boto3.session.Session | None = None,
                 api_key: str | None = None, sign: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or boto3.session.Session()
        self.api_key = api_key
        self.sign = sign
        self._http = requests.Session()
        # Enough pooled connections for a burst of concurrent starts from one client.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=256)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)

    @classmethod
    def for_stack(cls, stack_name: str, *, region: str | None = None,
                  endpoint_url: str | None = None, api_key: str | None = None) -> SagaApiClient:
        """A client of the API a deployed stack outputs as ``ApiUrl``."""
        session = boto3.session.Session(region_name=region)
        cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if "ApiUrl" not in outputs:
            raise LookupError(f"stack {stack_name} has no ApiUrl output; does it deploy a SagaApi?")
        return cls(outputs["ApiUrl"], session=session, api_key=api_key)

    def _send(self, method: str, path: str, body: str | None = None,
              headers: dict[str, str] | None = None) -> ApiAnswer:
        url = f"{self.base_url}{path}"
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        if self.api_key:
            all_headers["x-api-key"] = self.api_key
        credentials = self.session.get_credentials() if self.sign else None
        if credentials is not None:
            request = AWSRequest(method=method, url=url, data=body, headers=all_headers)
            SigV4Auth(credentials.get_frozen_credentials(), "execute-api",
                      self.session.region_name or "us-east-1").add_auth(request)
            all_headers = dict(request.headers.items())
        response = self._http.request(method, url, data=body, headers=all_headers,
                                      timeout=DEFAULT_TIMEOUT_SECONDS)
        try:
            parsed = response.json()
        except ValueError:
            parsed = {"message": response.text}
        return ApiAnswer(response.status_code, parsed)

    def start(self, saga_type: str, saga_input: dict[str, Any] | str, *,
              idempotency_key: str | None = None) -> ApiAnswer:
        """Starts a saga; a JSON string is sent as it is (handy to test bad bodies)."""
        body = saga_input if isinstance(saga_input, str) else json.dumps(saga_input)
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key is not None else {}
        return self._send("POST", f"/sagas/{saga_type}", body, headers)

    def status(self, saga_type: str, saga_id: str) -> ApiAnswer:
        """The saga's status and step log."""
        return self._send("GET", f"/sagas/{saga_type}/{saga_id}")
