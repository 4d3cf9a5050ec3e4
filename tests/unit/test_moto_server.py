"""moto's server on 127.0.0.1: free port, answers, clients point at it, clean stop on signals."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from driftloop.errors import DriftloopError
from driftloop.local.moto_server import MotoServer, _answers, patched_environ


def test_server_starts_on_a_free_loopback_port_and_clients_talk_to_it() -> None:
    # Given a server on a free port
    with MotoServer() as aws:
        # When a bucket is created through its client
        s3 = aws.client("s3")
        s3.create_bucket(Bucket="h7-moto-test")
        # Then the server listens on loopback and the bucket is listed there
        assert aws.host == "127.0.0.1" and aws.port > 0
        assert aws.endpoint_url == f"http://127.0.0.1:{aws.port}"
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert "h7-moto-test" in names
        url = aws.endpoint_url
    # And after the block it no longer answers
    assert not aws.running
    assert not _answers(url, timeout=0.5)


def test_environment_points_boto3_at_the_server_and_is_restored() -> None:
    import boto3

    # Given a server and an environment without an endpoint override
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with MotoServer() as aws:
        # When boto3 is used with no explicit endpoint inside environment()
        with aws.environment() as env:
            assert env["AWS_ENDPOINT_URL"] == aws.endpoint_url
            sqs = boto3.client("sqs")
            sqs.create_queue(QueueName="h7-env-queue")
            # Then the call reached moto (the queue url names the server's port)
            urls = sqs.list_queues()["QueueUrls"]
            assert any("h7-env-queue" in u for u in urls)
        # And the override is gone afterwards
        assert "AWS_ENDPOINT_URL" not in os.environ


def test_non_loopback_hosts_are_refused() -> None:
    # Given addresses outside 127.0.0.0/8, When a server is configured, Then it refuses
    for host in ("0.0.0.0", "10.0.0.1", "::1", "localhost"):
        with pytest.raises(DriftloopError, match="moto server"):
            MotoServer(host=host)
    # And another loopback address is accepted (not started)
    assert MotoServer(host="127.0.0.2").host == "127.0.0.2"


def test_patched_environ_restores_previous_values() -> None:
    # Given one variable set and one absent
    os.environ["H7_KEEP"] = "old"
    os.environ.pop("H7_NEW", None)
    # When both are patched
    with patched_environ({"H7_KEEP": "new", "H7_NEW": "x"}):
        assert os.environ["H7_KEEP"] == "new" and os.environ["H7_NEW"] == "x"
    # Then the old value is back and the new one is removed
    assert os.environ["H7_KEEP"] == "old"
    assert "H7_NEW" not in os.environ
    del os.environ["H7_KEEP"]


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_sigterm_stops_the_server_like_ctrl_c() -> None:
    # Given a running server with the previous SIGTERM handler remembered
    before = signal.getsignal(signal.SIGTERM)
    aws = MotoServer()
    url = ""
    # When SIGTERM arrives inside the block
    with pytest.raises(KeyboardInterrupt), aws:
        url = aws.endpoint_url
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    # Then the server is stopped and the old handler restored
    assert not aws.running
    assert not _answers(url, timeout=0.5)
    assert signal.getsignal(signal.SIGTERM) == before
