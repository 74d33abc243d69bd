"""An S3-compatible server for the code-store tests: moto's, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx

from tests.conftest import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "funclet-test", "AWS_SECRET_ACCESS_KEY": "funclet-test",
               "AWS_REGION": "us-east-1"}


@dataclass
class S3Server:
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, bucket: str, prefix: str = "code") -> dict[str, str]:
        """What points a funclet at ``s3://bucket/prefix`` on this server."""
        return {"FUNCLET_CODE_STORE": f"s3://{bucket}/{prefix}",
                "AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            region_name=CREDENTIALS["AWS_REGION"])

    def start(self) -> None:
        """(Re)start the server on its port; it keeps nothing across restarts."""
        server = shutil.which("moto_server", path=f"{sys.prefix}/bin") or "moto_server"
        self.process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.endpoint, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def start() -> S3Server:
    server = S3Server(free_port())
    server.start()
    return server
