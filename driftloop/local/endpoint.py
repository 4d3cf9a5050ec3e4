"""A SageMaker real-time endpoint on a laptop: the serving contract plus data capture to S3.

`LocalEndpoint` loads a model.tar.gz the way the SageMaker scikit-learn container does
(extract, import code/inference.py, call its model_fn on the extracted folder) and serves
it over HTTP on 127.0.0.1:

- `GET /ping` answers 200 once a model is loaded;
- `POST /invocations` runs input_fn -> predict_fn -> output_fn with the request's
  Content-Type and Accept, and honours `X-Amzn-SageMaker-Inference-Id`;
- `POST /endpoints/{name}/invocations` is the same call in the SageMaker Runtime API's
  shape, so `boto3.client("sagemaker-runtime", endpoint_url=endpoint.url)` works; a
  container error comes back as the runtime's ModelError (HTTP 424) as in AWS.

Bad payloads answer 400 (415 for an unknown Content-Type, 406 for an unknown Accept)
with the hook's one-line message. With a DataCaptureConfig (the CreateEndpointConfig
shape) a sample of successful invocations is written in SageMaker's exact capture
format (driftloop.capture.encode_capture_record) under
`{DestinationS3Uri}/{endpoint}/{variant}/yyyy/mm/dd/hh/{name}.jsonl`. Records are
buffered and flushed as files every `flush_records` records, every `flush_seconds` of
wall time, when the simulated clock enters a new hour, and on stop: nothing is lost.

`swap_model` replaces the model atomically (in-flight requests finish on the old one),
which is what a deployment does to the traffic behind an endpoint.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from driftloop.capture import capture_key, encode_capture_record
from driftloop.errors import DriftloopError
from driftloop.local.training import download_s3, extract_tar, split_s3_uri

log = logging.getLogger(__name__)

# SageMaker real-time endpoints accept payloads up to 6 MB.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
EVENT_ID_HEADER = "X-Driftloop-Event-Id"  # local only: the capture eventId of this request
DEFAULT_FLUSH_RECORDS = 1000
DEFAULT_FLUSH_SECONDS = 30.0
_module_counter = iter(range(1, 1 << 62))


def _check_loopback(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise DriftloopError(f"local endpoint: host {host!r} is not an IP address") from exc
    if not (
        isinstance(address, ipaddress.IPv4Address)
        and address in ipaddress.ip_network("127.0.0.0/8")
    ):
        raise DriftloopError(f"local endpoint: host {host} is outside 127.0.0.0/8")
    return host


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class LoadedModel:
    """The serving hooks of one model.tar.gz and the object model_fn returned."""

    source: str
    model_dir: Path
    module: ModuleType
    model: Any

    def invoke(self, body: bytes, content_type: str, accept: str | None) -> tuple[bytes, str]:
        data = self.module.input_fn(body, content_type)
        prediction = self.module.predict_fn(data, self.model)
        result = self.module.output_fn(prediction, accept)
        # As the container: a tuple is (body, content type), else the body in Accept's type.
        if isinstance(result, tuple):
            payload, out_type = result[0], str(result[1])
        else:
            payload, out_type = result, accept or "application/json"
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return bytes(payload), out_type


def load_model(source: str | Path, *, s3_client: Any = None, scratch: Path) -> LoadedModel:
    """Extract model.tar.gz (a path, an s3:// URI or an extracted folder) and run model_fn.

    The hooks come from code/inference.py inside the model, imported under a fresh module
    name each time, so two models (blue and green) never share module state.
    """
    name = str(source)
    if isinstance(source, str) and source.startswith("s3://"):
        bucket, key = split_s3_uri(source)
        download_dir = Path(tempfile.mkdtemp(dir=scratch, prefix="download-"))
        download_s3(source, download_dir, s3_client)
        source = download_dir / key.rsplit("/", 1)[-1]
    path = Path(source)
    if path.is_dir():
        model_dir = path
    elif path.is_file():
        model_dir = extract_tar(path, Path(tempfile.mkdtemp(dir=scratch, prefix="model-")))
    else:
        raise DriftloopError(f"{name}: no such model tarball or folder")
    script = model_dir / "code" / "inference.py"
    if not script.is_file():
        raise DriftloopError(f"{name}: no code/inference.py in the model (SAGEMAKER_PROGRAM)")
    module_name = f"driftloop_local_inference_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise DriftloopError(f"{script}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    # Registered before running, as an import would be (dataclasses look their module up).
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    for hook in ("model_fn", "input_fn", "predict_fn", "output_fn"):
        if not callable(getattr(module, hook, None)):
            raise DriftloopError(f"{script}: missing {hook}()")
    return LoadedModel(
        source=name, model_dir=model_dir, module=module, model=module.model_fn(str(model_dir))
    )


# --------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class CaptureSettings:
    """A DataCaptureConfig, validated."""

    enabled: bool
    sampling_percentage: float
    bucket: str
    prefix: str
    capture_input: bool
    capture_output: bool
    csv_content_types: tuple[str, ...]
    json_content_types: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CaptureSettings:
        """From the CreateEndpointConfig DataCaptureConfig shape (DriftloopError if invalid)."""
        try:
            destination = str(config["DestinationS3Uri"])
            pct = float(config.get("InitialSamplingPercentage", 100))
            modes = {str(o["CaptureMode"]).lower() for o in config.get("CaptureOptions", ())}
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftloopError(f"DataCaptureConfig: malformed ({exc})") from exc
        if not 0 <= pct <= 100:
            raise DriftloopError(f"DataCaptureConfig: InitialSamplingPercentage {pct} not in 0-100")
        if not modes or not modes <= {"input", "output"}:
            raise DriftloopError(
                "DataCaptureConfig: CaptureOptions must list CaptureMode Input and/or Output"
            )
        bucket, prefix = split_s3_uri(destination)
        # Without CaptureContentTypeHeader SageMaker writes every payload as BASE64.
        header = config.get("CaptureContentTypeHeader") or {}
        return cls(
            enabled=bool(config.get("EnableCapture", True)),
            sampling_percentage=pct,
            bucket=bucket,
            prefix=prefix.strip("/"),
            capture_input="input" in modes,
            capture_output="output" in modes,
            csv_content_types=tuple(header.get("CsvContentTypes", ())),
            json_content_types=tuple(header.get("JsonContentTypes", ())),
        )


class CaptureWriter:
    """Buffers capture lines per hour and writes each buffer to S3 as one .jsonl file.

    Thread-safe. A failed upload puts its lines back (they go with the next flush) and
    `close()` raises if anything is still unwritten, so a line is never dropped silently.
    """

    def __init__(
        self,
        *,
        s3_client: Any,
        bucket: str,
        prefix: str,
        endpoint_name: str,
        variant_name: str,
        flush_records: int = DEFAULT_FLUSH_RECORDS,
    ) -> None:
        if s3_client is None:
            raise DriftloopError("data capture needs an s3 client")
        if flush_records < 1:
            raise DriftloopError("flush_records must be at least 1")
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.flush_records = flush_records
        self._lock = threading.Lock()
        self._upload_lock = threading.Lock()  # one flush at a time, in order
        # hour (variant, start of the hour) -> (time of the first record, lines)
        self._buffers: dict[tuple[str, datetime], tuple[datetime, list[bytes]]] = {}
        self._buffered = 0
        self._latest_hour: datetime | None = None
        self.records_written = 0
        self.keys: list[str] = []
        self.upload_errors = 0

    @property
    def records_buffered(self) -> int:
        with self._lock:
            return self._buffered

    def set_variant(self, variant_name: str) -> None:
        with self._lock:
            self.variant_name = variant_name

    def add(self, line: bytes, when: datetime) -> None:
        """Buffer one capture line captured at `when`; may trigger a flush."""
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        hour = when.replace(minute=0, second=0, microsecond=0)
        with self._lock:
            bucket_key = (self.variant_name, hour)
            first, lines = self._buffers.setdefault(bucket_key, (when, []))
            lines.append(line)
            self._buffered += 1
            # A new hour closes the earlier hours' files (SageMaker rolls files over too).
            new_hour = self._latest_hour is not None and hour > self._latest_hour
            self._latest_hour = hour if self._latest_hour is None else max(self._latest_hour, hour)
            full = self._buffered >= self.flush_records
        if full:
            self.flush()
        elif new_hour:
            self.flush(before=hour)

    def flush(self, before: datetime | None = None) -> int:
        """Write buffered lines (only hours before `before` when given); returns files written."""
        with self._upload_lock:
            with self._lock:
                if before is None:
                    taken, self._buffers = self._buffers, {}
                else:
                    taken = {k: v for k, v in self._buffers.items() if k[1] < before}
                    for k in taken:
                        del self._buffers[k]
                self._buffered -= sum(len(lines) for _, lines in taken.values())
            written = 0
            for (variant, hour), (first, lines) in sorted(taken.items(), key=lambda kv: kv[0][1]):
                name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}"
                key = capture_key(self.prefix, self.endpoint_name, variant, hour, name)
                try:
                    self._s3.put_object(Bucket=self.bucket, Key=key, Body=b"".join(lines))
                except Exception as exc:  # any upload failure: keep the lines
                    self.upload_errors += 1
                    log.warning("capture upload to s3://%s/%s failed: %s", self.bucket, key, exc)
                    with self._lock:
                        _, kept = self._buffers.setdefault((variant, hour), (first, []))
                        kept[:0] = lines
                        self._buffered += len(lines)
                    continue
                written += 1
                with self._lock:
                    self.records_written += len(lines)
                    self.keys.append(key)
            return written

    def close(self) -> None:
        self.flush()
        left = self.records_buffered
        if left:
            raise DriftloopError(
                f"data capture: {left} record(s) could not be written to s3://{self.bucket}/"
            )


# --------------------------------------------------------------------------- the server


@dataclass
class EndpointStats:
    """Counters the endpoint keeps (read them with `LocalEndpoint.stats()`)."""

    requests: int = 0
    invocations: int = 0  # successful
    errors: Counter[int] = field(default_factory=Counter)  # by HTTP status
    sampled: int = 0  # successful invocations chosen for capture


class _Server(ThreadingHTTPServer):
    # Join handler threads on close, so stop() only flushes once every request is done.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], endpoint: LocalEndpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    error_content_type = "text/plain"
    # Buffer the response so status line, headers and body leave in one write (the handler
    # flushes after each request): two small writes meet the client's delayed ACK and
    # stall every request by ~40 ms. No Nagle delay either.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # http.server's naming
        if self.path.split("?", 1)[0] == "/ping":
            ok = self.server.endpoint.healthy
            self._send(200 if ok else 503, b"" if ok else b"no model", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # http.server's naming
        path = self.path.split("?", 1)[0]
        endpoint = self.server.endpoint
        runtime_api = False
        if path.startswith("/endpoints/") and path.endswith("/invocations"):
            name = path[len("/endpoints/") : -len("/invocations")]
            if name != endpoint.endpoint_name:
                message = f"Endpoint {name} of account 123456789012 not found."
                self._runtime_error(400, "ValidationError", message)
                return
            runtime_api = True
        elif path != "/invocations":
            self._send(404, b"not found", "text/plain")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._reply_error(411, "Content-Length required", runtime_api)
            return
        if int(length) > MAX_PAYLOAD_BYTES:
            self._reply_error(413, f"payload over {MAX_PAYLOAD_BYTES} bytes", runtime_api)
            return
        body = self.rfile.read(int(length))
        status, payload, out_type, headers = endpoint.invoke(
            body,
            content_type=self.headers.get("Content-Type") or "application/octet-stream",
            accept=self.headers.get("Accept"),
            inference_id=self.headers.get(INFERENCE_ID_HEADER),
        )
        if status == 200:
            if runtime_api:
                headers = {**headers, "x-Amzn-Invoked-Production-Variant": endpoint.variant_name}
            self._send(200, payload, out_type, headers)
        else:
            self._reply_error(status, payload.decode("utf-8", "replace"), runtime_api)

    def _reply_error(self, status: int, message: str, runtime_api: bool) -> None:
        if not runtime_api:
            self._send(status, message.encode(), "text/plain")
            return
        # The Runtime API wraps a container error as ModelError (HTTP 424).
        kind = "client" if status < 500 else "server"
        self._runtime_error(
            424,
            "ModelError",
            f'Received {kind} error ({status}) from primary with message "{message}".',
            {"OriginalStatusCode": status, "OriginalMessage": message},
        )

    def _runtime_error(
        self,
        status: int,
        code: str,
        message: str,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        body = json.dumps({"__type": code, "message": message, **(extra or {})}).encode()
        self._send(status, body, "application/x-amz-json-1.1", {"x-amzn-ErrorType": code})


class LocalEndpoint:
    """An HTTP endpoint serving a model.tar.gz with SageMaker's contract and data capture.

    `model`: a model.tar.gz path, an s3:// URI (read with `s3_client`) or an extracted
    model folder. `capture_config`: the DataCaptureConfig dict (None: no capture).
    `clock`: returns the capture time (a simulated clock in the local loop).
    `seed`: makes the capture sampling reproducible. The model runs on `workers`
    long-lived threads (like the container's model-server workers) whatever the number of
    connections; `model_threads` caps each one's OpenMP threads (OpenMP limits are per
    thread, and a fresh OpenMP pool per short-lived request thread costs 100x a
    prediction; None keeps the library default).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        s3_client: Any = None,
        capture_config: Mapping[str, Any] | None = None,
        endpoint_name: str = "driftloop-local",
        variant_name: str = "AllTraffic",
        clock: Callable[[], datetime] = _utcnow,
        host: str = "127.0.0.1",
        port: int = 0,
        flush_records: int = DEFAULT_FLUSH_RECORDS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        seed: int | None = None,
        workers: int | None = None,
        model_threads: int | None = 1,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.host = _check_loopback(host)
        self._port = port
        self._clock = clock
        self._s3 = s3_client
        self._flush_seconds = flush_seconds
        self._model_threads = model_threads
        self._workers = workers or min(4, os.cpu_count() or 1)
        self._executor: ThreadPoolExecutor | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stats = EndpointStats()
        self._scratch = Path(tempfile.mkdtemp(prefix="driftloop-endpoint-"))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.capture: CaptureSettings | None = None
        self.writer: CaptureWriter | None = None
        try:
            self._model: LoadedModel = load_model(model, s3_client=s3_client, scratch=self._scratch)
            if capture_config is not None:
                self.capture = CaptureSettings.from_config(capture_config)
                if self.capture.enabled:
                    self.writer = CaptureWriter(
                        s3_client=s3_client,
                        bucket=self.capture.bucket,
                        prefix=self.capture.prefix,
                        endpoint_name=endpoint_name,
                        variant_name=variant_name,
                        flush_records=flush_records,
                    )
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise DriftloopError("local endpoint: not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def healthy(self) -> bool:
        return self._model is not None and not self._stopping.is_set()

    @property
    def model(self) -> LoadedModel:
        return self._model

    def start(self) -> LocalEndpoint:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers,
            thread_name_prefix=f"model-{self.endpoint_name}",
            initializer=self._init_worker,
        )
        self._server = _Server((self.host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"endpoint-{self.endpoint_name}",
            daemon=True,
        )
        self._thread.start()
        if self.writer is not None:
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="capture-flush", daemon=True
            )
            self._flusher.start()
        return self

    def stop(self) -> None:
        """Stop serving, wait for in-flight requests, write every buffered capture record."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the handler threads
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.writer is not None:
            self.writer.close()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _init_worker(self) -> None:
        if self._model_threads is not None:
            from threadpoolctl import threadpool_limits

            # Per-thread OpenMP setting, kept for the worker's life (never restored).
            threadpool_limits(limits=self._model_threads, user_api="openmp")

    def _flush_periodically(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(min(1.0, self._flush_seconds)):
            if time.monotonic() - last >= self._flush_seconds and self.writer is not None:
                self.writer.flush()
                last = time.monotonic()

    # ------------------------------------------------------------------ serving

    def swap_model(self, model: str | Path, *, variant_name: str | None = None) -> LoadedModel:
        """Serve another model from now on (and, optionally, capture under another variant).

        The new model is loaded before the switch, so requests never see a half-loaded
        one; requests already running finish on the old model. Returns the old model.
        """
        loaded = load_model(model, s3_client=self._s3, scratch=self._scratch)
        with self._lock:
            old, self._model = self._model, loaded
            if variant_name is not None:
                self.variant_name = variant_name
                if self.writer is not None:
                    self.writer.set_variant(variant_name)
        return old

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            return {
                "requests": s.requests,
                "invocations": s.invocations,
                "errors": dict(s.errors),
                "sampled": s.sampled,
                "capture_records_written": self.writer.records_written if self.writer else 0,
                "capture_files": list(self.writer.keys) if self.writer else [],
            }

    def invoke(
        self,
        body: bytes,
        *,
        content_type: str,
        accept: str | None = None,
        inference_id: str | None = None,
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """One invocation: (status, body, content type, extra headers). Used by the server."""
        with self._lock:
            self._stats.requests += 1
            model = self._model
        status, payload, out_type = self._call(model, body, content_type, accept)
        if status != 200:
            with self._lock:
                self._stats.errors[status] += 1
            return status, payload, out_type, {}
        event_id = str(uuid.uuid4())
        when = self._clock()
        with self._lock:
            self._stats.invocations += 1
            sampled = self.writer is not None and (self._rng.random() * 100.0 < self._capture_pct())
            if sampled:
                self._stats.sampled += 1
        if sampled and self.writer is not None and self.capture is not None:
            line = encode_capture_record(
                input_data=body,
                input_content_type=content_type,
                output_data=payload,
                output_content_type=out_type,
                event_id=event_id,
                inference_time=when,
                inference_id=inference_id,
                capture_input=self.capture.capture_input,
                capture_output=self.capture.capture_output,
                csv_content_types=self.capture.csv_content_types,
                json_content_types=self.capture.json_content_types,
            )
            self.writer.add(line, when)
        return 200, payload, out_type, {EVENT_ID_HEADER: event_id}

    def _capture_pct(self) -> float:
        return self.capture.sampling_percentage if self.capture is not None else 0.0

    def _call(
        self, model: LoadedModel, body: bytes, content_type: str, accept: str | None
    ) -> tuple[int, bytes, str]:
        module = model.module
        unsupported_type = getattr(module, "UnsupportedContentType", None)
        unsupported_accept = getattr(module, "UnsupportedAccept", None)
        try:
            if self._executor is not None:
                payload, out_type = self._executor.submit(
                    model.invoke, body, content_type, accept
                ).result()
            else:  # not started: run in the caller's thread (direct use of invoke())
                payload, out_type = model.invoke(body, content_type, accept)
        except Exception as exc:  # every hook failure: an HTTP status
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if unsupported_type is not None and isinstance(exc, unsupported_type):
                return 415, message.encode(), "text/plain"
            if unsupported_accept is not None and isinstance(exc, unsupported_accept):
                return 406, message.encode(), "text/plain"
            if isinstance(exc, ValueError):
                return 400, message.encode(), "text/plain"
            log.exception("model error in %s", model.source)
            return 500, f"model error: {message}".encode(), "text/plain"
        return 200, payload, out_type
