"""moto's server on 127.0.0.1 as the AWS API of the local loop.

The local loop runs the same Lambda handlers and boto3 code that run in AWS; only the
endpoint they talk to changes. This module starts moto's threaded server on a free port
of the loopback interface, waits until it answers, hands out the environment (and boto3
clients) that point AWS SDKs at it, and stops it on exit — including on Ctrl-C and
SIGTERM, so a killed demo never leaves a server thread or a changed environment behind.

Only loopback addresses (127.0.0.0/8) are accepted: the local loop never talks to a
real AWS endpoint and never listens on a public interface.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from types import FrameType, TracebackType
from typing import Any

from driftloop.errors import DriftloopError

DEFAULT_REGION = "us-east-1"
# moto accepts any credentials; these make it obvious in a log that nothing real is used.
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"
# The fixed account id moto reports for the dummy credentials.
MOTO_ACCOUNT_ID = "123456789012"
START_TIMEOUT_S = 15.0


def _check_loopback(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise DriftloopError(f"moto server: host {host!r} is not an IP address") from exc
    loopback = ipaddress.ip_network("127.0.0.0/8")
    if not (isinstance(address, ipaddress.IPv4Address) and address in loopback):
        raise DriftloopError(
            f"moto server: host {host} is outside 127.0.0.0/8; refusing to listen on it"
        )
    return host


def _answers(url: str, timeout: float = 1.0) -> bool:
    """True when something answers HTTP at `url` (any status code counts as an answer)."""
    # moto's dashboard data is a cheap GET that every moto server version serves.
    request = urllib.request.Request(url + "/moto-api/data.json", method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            response.read()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


class MotoServer:
    """moto's ThreadedMotoServer on 127.0.0.1, usable as a context manager.

        with MotoServer() as aws:
            s3 = aws.client("s3")
            with aws.environment():          # boto3 created inside now talks to moto
                handler(event, context)

    `port=0` picks a free port. On entering, SIGTERM is turned into the same clean
    shutdown as Ctrl-C (KeyboardInterrupt) when called from the main thread.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, region: str = DEFAULT_REGION
    ) -> None:
        self.host = _check_loopback(host)
        if not 0 <= port < 65536:
            raise DriftloopError(f"moto server: port {port} is out of range")
        self.region = region
        self._requested_port = port
        self._server: Any = None
        self._port: int | None = None
        self._old_sigterm: Any = None
        self._installed_signal = False
        self._session: Any = None
        self._clients: dict[Any, Any] = {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise DriftloopError("moto server: not started")
        return self._port

    @property
    def partition(self) -> str:
        return "aws"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        """Start the server thread and wait until it answers HTTP."""
        if self._server is not None:
            return self
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise DriftloopError(
                "moto server: moto[server] is not installed (pip install 'driftloop[local]')"
            ) from exc
        # werkzeug logs every request at INFO on stderr; the loop makes thousands.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self._requested_port, verbose=False)
        try:
            server.start()
        except OSError as exc:
            raise DriftloopError(
                f"moto server: cannot listen on {self.host}:{self._requested_port} ({exc})"
            ) from exc
        self._server = server
        _, port = server.get_host_and_port()
        self._port = int(port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.endpoint_url):
            if time.monotonic() > deadline:
                self.stop()
                raise DriftloopError(
                    f"moto server: no answer from {self.endpoint_url} "
                    f"within {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the server thread; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()

    def __enter__(self) -> MotoServer:
        self._install_sigterm()
        try:
            return self.start()
        except BaseException:
            self._restore_sigterm()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self._restore_sigterm()

    def _install_sigterm(self) -> None:
        # Signal handlers can only be set from the main thread (pytest-xdist workers and
        # threads that start a server skip this; their parent owns the signals).
        if threading.current_thread() is not threading.main_thread():
            return

        def _on_sigterm(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        self._installed_signal = True

    def _restore_sigterm(self) -> None:
        if self._installed_signal:
            old = self._old_sigterm if self._old_sigterm is not None else signal.SIG_DFL
            signal.signal(signal.SIGTERM, old)
            self._installed_signal = False

    # -- what clients need ---------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment that points every AWS SDK in this process (and children) at moto."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            # Never read the user's real profile or credentials files.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @contextlib.contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """Set `env()` in os.environ for the block and restore the previous values after."""
        with patched_environ(self.env()) as env:
            yield env

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for `service` that talks to this server (cached per service).

        botocore loads its service models per session, which costs a second or more on a
        busy machine, so one session serves every client.
        """
        import boto3

        key = (service, tuple(sorted(kwargs.items())))
        if key not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session(
                    aws_access_key_id=DUMMY_ACCESS_KEY,
                    aws_secret_access_key=DUMMY_SECRET_KEY,
                    aws_session_token="testing",
                    region_name=self.region,
                )
            self._clients[key] = self._session.client(
                service, endpoint_url=self.endpoint_url, **kwargs
            )
        return self._clients[key]


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Set environment variables for a block; restore (or remove) them afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield dict(values)
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
