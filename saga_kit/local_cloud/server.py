"""The local cloud as a long-running server: the saga API over HTTP plus a moto endpoint.

``saga serve`` runs this. One process holds the deployed stack (the same synthesized template as
production), so three doors open onto the same state:

* the saga API (:class:`saga_kit.local_cloud.gateway.LocalRestApi`) at ``http://<host>:<api port>``:
  the routes, validation and answers of the deployed API Gateway;
* a moto endpoint at ``http://<host>:<aws port>``: point boto3 or the AWS CLI at it
  (``--endpoint-url``, or ``AWS_ENDPOINT_URL``) to look at the tables, queues, executions;
* queued SQS messages are delivered to their Lambda event sources in the background, as
  Lambda's poller would;
* ``GET /metrics`` on the API's port: the kit's metrics (the EMF documents every handler
  emitted) in the Prometheus exposition format, for a Prometheus server to scrape
  (:class:`saga_kit.prometheus.EmfCollector`; names in docs/prometheus.md).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from saga_kit.local_cloud.cloud import LocalCloud
from saga_kit.local_cloud.gateway import MAX_PAYLOAD_BYTES, HttpResponse, LocalRestApi
from saga_kit.prometheus.local import EmfCollector

logger = logging.getLogger(__name__)
#: The path of the Prometheus exposition of the kit's metrics, beside the saga API's routes.
METRICS_PATH = "/metrics"
#: How often queued messages are handed to their Lambda event sources.
PUMP_INTERVAL_SECONDS = 0.5


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A burst of clients must queue, not be refused.
    request_queue_size = 512


def _handler_class(api: LocalRestApi, metrics: Callable[[], HttpResponse]
                   ) -> type[BaseHTTPRequestHandler]:
    class ApiRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            if self.command == "GET" and self.path.split("?", 1)[0] == METRICS_PATH:
                self._send(metrics())
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PAYLOAD_BYTES:
                answer = api.gateway_response("REQUEST_TOO_LARGE", message="Request Too Long")
                self.close_connection = True
            else:
                body = self.rfile.read(length) if length else b""
                try:
                    answer = api.handle(self.command, self.path, dict(self.headers.items()), body,
                                        self.client_address[0])
                except Exception:
                    logger.exception("local API failed on %s %s", self.command, self.path)
                    answer = api.gateway_response("INTEGRATION_FAILURE")
            self._send(answer)

        def _send(self, answer: HttpResponse) -> None:
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json", **answer.headers,
                       "Content-Length": str(len(answer.body))}
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("%s %s", self.address_string(), format % args)

    return ApiRequestHandler


class LocalSagaServer:
    """Serves a running :class:`LocalCloud` over HTTP (see the module docstring).

    Args:
        cloud: A started LocalCloud whose template has one REST API.
        host: Interface to listen on (loopback by default: the server checks no signature).
        api_port: Port of the saga API (0 picks a free one).
        aws_port: Port of the moto endpoint (0 picks a free one; ``None`` serves none).
    """

    def __init__(self, cloud: LocalCloud, *, host: str = "127.0.0.1", api_port: int = 8000,
                 aws_port: int | None = 5000) -> None:
        self.cloud = cloud
        self.host = host
        self.api = LocalRestApi(cloud.template, self._invoke)
        # Every EMF document the handlers emitted, as Prometheus families (saga_*), from the
        # first one on: a scrape after a run of sagas counts them all.
        self.metrics = EmfCollector()
        self._unsubscribe_metrics = cloud.metrics.subscribe(self.metrics.add)
        self._api_server = _ApiServer((host, api_port),
                                      _handler_class(self.api, self._metrics_page))
        self._aws_port = aws_port
        self._moto_server: Any = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def api_url(self) -> str:
        """Base URL of the saga API."""
        return f"http://{self.host}:{self._api_server.server_address[1]}"

    @property
    def endpoint_url(self) -> str | None:
        """The moto endpoint for boto3 / the AWS CLI (``None`` when not served)."""
        if self._moto_server is None:
            return None
        return f"http://{self.host}:{self._moto_server._server.server_port}"

    @property
    def metrics_url(self) -> str:
        """Where Prometheus scrapes the kit's metrics (exposition format)."""
        return f"{self.api_url}{METRICS_PATH}"

    def _metrics_page(self) -> HttpResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return HttpResponse(200, {"Content-Type": CONTENT_TYPE_LATEST},
                            generate_latest(self.metrics.registry()))

    def _invoke(self, logical_id: str, event: dict[str, Any]) -> tuple[str, bool]:
        answer = self.cloud.client("lambda").invoke(
            FunctionName=self.cloud.resources[logical_id].physical_id,
            Payload=json.dumps(event).encode())
        return answer["Payload"].read().decode(), "FunctionError" in answer

    def start(self) -> LocalSagaServer:
        """Starts the API, the moto endpoint and the event-source poller in threads."""
        if self._aws_port is not None:
            from moto.server import ThreadedMotoServer

            self._moto_server = ThreadedMotoServer(ip_address=self.host, port=self._aws_port,
                                                   verbose=False)
            self._moto_server.start()
        self._warm_up()
        self._spawn(self._api_server.serve_forever, "saga-api")
        self._spawn(self._pump_forever, "event-sources")
        return self

    def _warm_up(self) -> None:
        """One request per route before serving: the API Lambda's first import and clients are
        paid here, not by the first burst of callers (a cold Lambda, locally, is in-process)."""
        for method in self.api.methods:
            if method.http_method == "GET":
                path = method.resource_path.replace("{saga_id}", "warm-up").replace(
                    "{saga_type}", "warm-up")
                self.api.handle("GET", path, {"Host": "localhost"}, b"")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _pump_forever(self) -> None:
        while not self._stopping.wait(PUMP_INTERVAL_SECONDS):
            try:
                self.cloud.pump_event_sources(max_batches=100)
            except Exception:
                logger.exception("delivering queued messages failed; retrying")

    def stop(self) -> None:
        """Stops serving (the LocalCloud itself is left to its owner)."""
        self._stopping.set()
        self._unsubscribe_metrics()
        self._api_server.shutdown()
        self._api_server.server_close()
        if self._moto_server is not None:
            self._moto_server.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> LocalSagaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
