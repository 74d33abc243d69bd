"""The platform process: nothing outlives it, and it restarts with its functions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from funclet.store import migrate
from tests import databases
from tests.conftest import cgroups_of, descendants, serve_once, start_server, stop_server
from tests.helpers import deploy, invoke, wait_for


def test_instances_die_with_a_killed_platform(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            name = deploy(client, {"index.py": "def handler(e, c):\n    return 'up'\n"})
            zygotes = len(descendants(server.process.pid))
            assert invoke(client, name).text == "up"
            # The instance took a process started ahead; the one that replaces it comes
            # a moment later (in the background): then there are more than before.
            wait_for(lambda: len(descendants(server.process.pid)) > zygotes, timeout=10)
        before = cgroups_of(server)  # the instance's, and those of instances started ahead
        assert before
        pid = server.process.pid
        os.kill(pid, signal.SIGKILL)
        server.process.wait(10)
        wait_for(lambda: not descendants(pid), timeout=10)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    # A restart finds nothing left over: the old instances' cgroups are swept away (the
    # new run's instances started ahead have cgroups of their own).
    server = start_server(tmp_path)
    try:
        assert not set(before) & set(cgroups_of(server))
    finally:
        stop_server(server)


def test_functions_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        name = deploy(client, {"index.py": "def handler(e, c):\n    return 'still here'\n"})
        first = invoke(client, name)
    stop_server(server)
    time.sleep(0.1)
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            again = invoke(client, name)
            assert again.text == "still here"
            assert again.headers["x-funclet-start-kind"] == "cold"
            rid = first.headers["x-fc-request-id"]
            record = client.get(f"/2023-03-30/functions/{name}/invocations/{rid}")
            assert record.status_code == 200
            instances = client.get(f"/2023-03-30/functions/{name}/instances").json()["instances"]
            old = next(i for i in instances
                       if i["instanceId"] == first.headers["x-funclet-instance-id"])
            assert old["state"] == "stopped" and old["stopReason"] == "shutdown"
    finally:
        stop_server(server)


def test_sigterm_gives_running_invocations_a_bounded_grace(tmp_path: Path) -> None:
    import threading

    server = start_server(tmp_path, FUNCLET_SHUTDOWN_GRACE_SECONDS="1")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        name = deploy(client, {"index.py": """
            import time

            def handler(event, context):
                time.sleep(float(event or 0))
                return "done"
        """})
        assert invoke(client, name).text == "done"
        answers: list[httpx.Response] = []
        slow = threading.Thread(target=lambda: answers.append(invoke(client, name, b"60")))
        slow.start()
        time.sleep(0.5)
        started = time.monotonic()
        stop_server(server)  # asserts nothing is left behind
        assert time.monotonic() - started < 10
        slow.join(10)
    (answer,) = answers
    assert answer.status_code == 503
    assert answer.json()["Code"] == "ServiceUnavailable"
    assert "Traceback" not in server.log()


def test_a_second_platform_on_the_same_data_folder_exits_and_touches_nothing(
    tmp_path: Path,
) -> None:
    import threading

    from tests.conftest import free_port

    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            name = deploy(client, {"index.py": """
                import time

                def handler(event, context):
                    time.sleep(3)
                    return "finished"
            """})
            answers: list[httpx.Response] = []
            slow = threading.Thread(target=lambda: answers.append(invoke(client, name)))
            slow.start()
            wait_for(lambda: any(i["state"] == "busy" for i in client.get(
                f"/2023-03-30/functions/{name}/instances").json()["instances"]))
            lock = (server.data_dir / "funclet.lock").read_text()
            started = time.monotonic()
            second = subprocess.run(
                [sys.executable, "-m", "funclet", "serve"], cwd=tmp_path, timeout=30,
                capture_output=True, text=True,
                env={**os.environ, "FUNCLET_DATA_DIR": str(server.data_dir),
                     "FUNCLET_PORT": str(free_port())})
            took = time.monotonic() - started
            slow.join(30)
            assert second.returncode == 1 and took < 10
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert str(server.data_dir.resolve()) in lines[0]
            assert f"pid {server.process.pid}" in lines[0]
            assert (server.data_dir / "funclet.lock").read_text() == lock
            (answer,) = answers
            assert answer.status_code == 200 and answer.text == "finished"
            assert invoke(client, name).text == "finished"  # the first keeps serving
            instances = client.get(f"/2023-03-30/functions/{name}/instances").json()
            assert all(i.get("stopReason") in (None, "") for i in instances["instances"])
    finally:
        stop_server(server)



def test_a_database_with_a_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    url = databases.create(f"funclet_test_newer_{os.getpid()}")
    migrate.upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    refused = serve_once(tmp_path, FUNCLET_DATABASE_URL=url)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "schema revision 9999, newer than this funclet knows" in lines[0]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]


def test_a_database_that_is_down_is_one_line(tmp_path: Path) -> None:
    refused = serve_once(tmp_path, FUNCLET_DATABASE_URL="postgresql://postgres@127.0.0.1:1/db")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "the database db at 127.0.0.1:1 cannot be used" in lines[0]


def test_a_second_funclet_under_a_node_id_in_use_exits_and_touches_nothing(
    tmp_path: Path,
) -> None:
    url = databases.create(f"funclet_test_shared_{os.getpid()}")
    (tmp_path / "first").mkdir()
    first = start_server(tmp_path / "first", FUNCLET_DATABASE_URL=url, FUNCLET_NODE_ID="n1")
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            name = deploy(client, {"index.py": "def handler(event, context):\n    return 'one'\n"})
            second = serve_once(tmp_path, FUNCLET_DATABASE_URL=url, FUNCLET_NODE_ID="n1")
            assert second.returncode == 1
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert "node id n1 is taken by a running funclet" in lines[0]
            assert f"pid {first.process.pid}" in lines[0]
            assert invoke(client, name).text == "one"
            nodes = client.get("/2023-03-30/nodes").json()["nodes"]
            assert [(n["nodeId"], n["state"]) for n in nodes] == [("n1", "alive")]
    finally:
        stop_server(first)
