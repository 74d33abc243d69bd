"""Code packages in an S3-compatible bucket (moto's server): stored once by sha256,
fetched by a node that never saw them on its first cold start, and a store that is
missing, down or damaged answers clearly and keeps nothing half-done."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import databases, s3
from tests.conftest import Server, serve_once, start_server, stop_server
from tests.helpers import API, b64, create_body, deploy, invoke, make_zip, unique

HELLO = {"index.py": "def handler(event, context):\n    return 'from the bucket'\n"}


@pytest.fixture(scope="module")
def moto() -> Iterator[s3.S3Server]:
    server = s3.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto: s3.S3Server) -> str:
    name = f"funclet-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=name)
    return name


def _node(folder: Path, moto: s3.S3Server, bucket: str, database: str) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    return start_server(folder, FUNCLET_DATABASE_URL=database, **moto.env(bucket))


def _keys(moto: s3.S3Server, bucket: str) -> list[str]:
    listed = moto.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_a_package_is_stored_once_by_sha256_and_not_in_the_data_folder(
        tmp_path: Path, moto: s3.S3Server, bucket: str) -> None:
    database = databases.create(f"funclet_test_s3_once_{os.getpid()}")
    node = _node(tmp_path / "one", moto, bucket, database)
    try:
        with httpx.Client(base_url=node.url, timeout=60) as client:
            package = make_zip(HELLO)  # the same bytes twice (a zip holds its time)
            first, second = unique(), unique()
            for name in (first, second):
                r = client.post(f"{API}/functions", json={
                    "functionName": name, "runtime": "python3.11", "handler": "index.handler",
                    "code": {"zipFile": b64(package)}})
                assert r.status_code == 200, r.text
            assert invoke(client, first).text == "from the bucket"
            assert invoke(client, second).text == "from the bucket"
        # The same zip twice: one object, named by its sha256.
        assert _keys(moto, bucket) == [f"code/packages/{hashlib.sha256(package).hexdigest()}.zip"]
        assert not list((node.data_dir / "code").glob("packages/*.zip"))
        assert len(list((node.data_dir / "code" / "unpacked").iterdir())) == 1
    finally:
        stop_server(node)


def test_a_node_that_never_saw_a_package_fetches_it_on_its_first_cold_start(
        tmp_path: Path, moto: s3.S3Server, bucket: str) -> None:
    database = databases.create(f"funclet_test_s3_fetch_{os.getpid()}")
    first = _node(tmp_path / "first", moto, bucket, database)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            name = deploy(client, HELLO)
    finally:
        stop_server(first)
    second = _node(tmp_path / "second", moto, bucket, database)
    try:
        assert not (second.data_dir / "code" / "unpacked").exists() or not list(
            (second.data_dir / "code" / "unpacked").iterdir())
        with httpx.Client(base_url=second.url, timeout=60) as client:
            answer = invoke(client, name)
            assert answer.status_code == 200 and answer.text == "from the bucket"
            assert answer.headers["x-funclet-start-kind"] == "cold"
        assert len(list((second.data_dir / "code" / "unpacked").iterdir())) == 1
    finally:
        stop_server(second)


def test_a_damaged_object_fails_the_cold_start_clearly(
        tmp_path: Path, moto: s3.S3Server, bucket: str) -> None:
    database = databases.create(f"funclet_test_s3_damaged_{os.getpid()}")
    first = _node(tmp_path / "first", moto, bucket, database)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            name = deploy(client, HELLO)
    finally:
        stop_server(first)
    (key,) = _keys(moto, bucket)
    moto.client().put_object(Bucket=bucket, Key=key, Body=b"not the package")
    second = _node(tmp_path / "second", moto, bucket, database)
    try:
        with httpx.Client(base_url=second.url, timeout=60) as client:
            answer = invoke(client, name)
            assert answer.status_code != 500
            error = answer.json()
            assert error["errorType"] == "Runtime.StartFailed"
            assert "damaged" in error["errorMessage"] and bucket in error["errorMessage"]
    finally:
        stop_server(second)


def test_a_store_that_goes_down_refuses_deploys_clearly_and_keeps_nothing(
        tmp_path: Path, moto: s3.S3Server, bucket: str) -> None:
    node = _node(tmp_path / "node", moto, bucket, databases.create(
        f"funclet_test_s3_down_{os.getpid()}"))
    try:
        with httpx.Client(base_url=node.url, timeout=120) as client:
            moto.stop()
            try:
                r = client.post(f"{API}/functions", json=create_body("while-down", HELLO))
                assert r.status_code == 503, r.text
                assert r.json()["Code"] == "ServiceUnavailable"
                assert f"the code store s3://{bucket}/code cannot be used right now" in \
                    r.json()["Message"]
                assert client.get(f"{API}/functions/while-down").status_code == 404
                unpacked = node.data_dir / "code" / "unpacked"
                assert not unpacked.exists() or not list(unpacked.iterdir())
            finally:
                moto.start()  # empty again: the bucket is made anew
            moto.client().create_bucket(Bucket=bucket)
            assert invoke(client, deploy(client, HELLO, name="while-down")).text == \
                "from the bucket"
    finally:
        stop_server(node)



def test_a_missing_bucket_is_one_line_at_start(tmp_path: Path, moto: s3.S3Server) -> None:
    refused = serve_once(tmp_path, **moto.env("no-such-bucket"))
    assert refused.returncode == 1
    assert _error_lines(refused) == ["Error: the code store's bucket no-such-bucket does not "
                                     "exist"], refused.stderr


def test_a_code_store_url_that_is_not_s3_is_one_line(tmp_path: Path) -> None:
    refused = serve_once(tmp_path, FUNCLET_CODE_STORE="gs://bucket/code")
    assert refused.returncode == 1
    (line,) = _error_lines(refused)
    assert "must be s3://bucket/prefix or a folder" in line, refused.stderr


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the user is told: the lines that are not the log's (which has no traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.strip().splitlines() if not line[:4].isdigit()]


def test_healthz_says_when_the_code_store_does_not_answer(
        tmp_path: Path, moto: s3.S3Server, bucket: str) -> None:
    node = _node(tmp_path / "node", moto, bucket, databases.create(
        f"funclet_test_s3_health_{os.getpid()}"))
    try:
        with httpx.Client(base_url=node.url, timeout=60) as client:
            health = client.get("/healthz").json()
            assert health["status"] == "ok" and health["codeStore"] == {
                "location": f"s3://{bucket}/code", "ok": True}
            assert health["database"] == {"backend": "postgresql", "ok": True}
            moto.stop()
            try:
                r = client.get("/healthz")
                assert r.status_code == 503 and r.json()["status"] == "unavailable"
                assert r.json()["codeStore"]["ok"] is False
                assert f"the code store s3://{bucket}/code" in r.json()["codeStore"]["error"]
            finally:
                moto.start()
                moto.client().create_bucket(Bucket=bucket)
            assert client.get("/healthz").status_code == 200
    finally:
        stop_server(node)
