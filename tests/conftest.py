"""Shared fixtures. Tests run offline on CPU; the real SPY file lives beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPY_CSV = REPO / "data" / "spy_daily.csv"


@pytest.fixture(scope="session")
def spy_csv() -> Path:
    if not SPY_CSV.exists():
        pytest.fail(f"real SPY data expected at {SPY_CSV} (the project carries it under data/)")
    return SPY_CSV


@pytest.fixture(scope="session")
def spy_bars(spy_csv):
    from spywatch.market_data import read_bars_csv

    return read_bars_csv(spy_csv)


# ----------------------------------------------------------------------------- object storage


class S3Server:
    """moto's server mode: a real S3 endpoint over HTTP (conditional writes enforced), started
    once per test session. ``env`` is what a process needs to reach it (the standard AWS
    variables); ``bucket()`` creates a fresh, empty bucket and returns its name."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "spywatch-test",
                    "AWS_SECRET_ACCESS_KEY": "spywatch-test", "AWS_DEFAULT_REGION": "us-east-1"}
        self._count = 0

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="spywatch-test",
                            aws_secret_access_key="spywatch-test", region_name="us-east-1")

    def bucket(self) -> str:
        self._count += 1
        name = f"spywatch-test-{self._count}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """``moto_server`` in its own process on a free port, healthy; stopped at the end."""
    import os
    import subprocess

    from tests.s3 import start_moto_server

    proc, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        server = S3Server(endpoint)
        old = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)  # this process's clients (s3fs, boto3) reach it too
        yield server
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
