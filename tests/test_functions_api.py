"""The control API: create, get, list, update, delete, and every refusal at deploy."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import API, b64, create_body, deploy, invoke, make_zip, unique, wait_for

HELLO = {"index.py": "def handler(event, context):\n    return 'v1'\n"}


def test_create_then_get_returns_fc_function_fields(client: httpx.Client, server: Server) -> None:
    name = unique()
    r = client.post(f"{API}/functions", json=create_body(
        name, HELLO, description="greets", timeout=10, memorySize=256, instanceConcurrency=1,
        environmentVariables={"A": "1"},
        instanceLifecycleConfig={"initializer": {"handler": "index.handler", "timeout": 5}},
    ))
    assert r.status_code == 200, r.text
    fn = client.get(f"{API}/functions/{name}").json()
    assert fn == r.json()
    assert fn["functionName"] == name
    assert fn["functionArn"].startswith("acs:fc:") and fn["functionArn"].endswith(
        f":functions/{name}")
    assert len(fn["functionId"]) == 36
    assert fn["codeChecksum"].isdigit() and len(fn["codeSha256"]) == 64 and fn["codeSize"] > 0
    assert fn["createdTime"].endswith("Z") and fn["lastModifiedTime"].endswith("Z")
    assert fn["state"] == "Active"
    assert (fn["timeout"], fn["memorySize"], fn["description"]) == (10, 256, "greets")
    assert fn["environmentVariables"] == {"A": "1"}
    assert fn["instanceLifecycleConfig"]["initializer"] == {"handler": "index.handler",
                                                            "timeout": 5}
    # The package is stored by its sha256 and unpacked once.
    assert (server.data_dir / "code" / "packages" / f"{fn['codeSha256']}.zip").exists()
    assert (server.data_dir / "code" / "unpacked" / fn["codeSha256"] / "index.py").exists()


def test_defaults_follow_fc(client: httpx.Client) -> None:
    name = deploy(client, HELLO)
    fn = client.get(f"{API}/functions/{name}").json()
    assert (fn["timeout"], fn["memorySize"], fn["instanceConcurrency"]) == (60, 512, 1)


def test_creating_an_existing_function_is_409(client: httpx.Client) -> None:
    name = deploy(client, HELLO)
    r = client.post(f"{API}/functions", json=create_body(name, HELLO))
    assert r.status_code == 409
    assert r.json()["Code"] == "FunctionAlreadyExists"


def test_list_pages_through_functions_with_prefix_limit_and_token(client: httpx.Client) -> None:
    prefix = unique("list")
    names = sorted(deploy(client, HELLO, name=f"{prefix}-{i}") for i in range(5))
    seen, token = [], None
    while True:
        params = {"prefix": prefix, "limit": 2, **({"nextToken": token} if token else {})}
        page = client.get(f"{API}/functions", params=params).json()
        assert len(page["functions"]) <= 2
        seen += [f["functionName"] for f in page["functions"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == names
    assert client.get(f"{API}/functions", params={"limit": 0}).status_code == 400


def test_update_with_new_code_gives_new_instances_and_drains_the_old(
    client: httpx.Client,
) -> None:
    name = deploy(client, HELLO)
    old = invoke(client, name)
    assert old.text == "v1"
    r = client.put(f"{API}/functions/{name}", json={
        "code": {"zipFile": b64(make_zip({"index.py":
                                          "def handler(event, context):\n    return 'v2'\n"}))},
    })
    assert r.status_code == 200, r.text
    assert r.json()["codeChecksum"] != old.headers["x-fc-code-checksum"]
    new = invoke(client, name)
    assert new.text == "v2"
    assert new.headers["x-funclet-start-kind"] == "cold"
    assert new.headers["x-funclet-instance-id"] != old.headers["x-funclet-instance-id"]

    def old_stopped() -> bool:
        items = client.get(f"{API}/functions/{name}/instances").json()["instances"]
        by_id = {i["instanceId"]: i for i in items}
        inst = by_id.get(old.headers["x-funclet-instance-id"])
        return bool(inst) and inst["state"] == "stopped" and inst["stopReason"] == "undeployed"

    wait_for(old_stopped)


def test_update_of_configuration_alone_also_replaces_instances(client: httpx.Client) -> None:
    name = deploy(client, {"index.py": """
        import os

        def handler(event, context):
            return os.environ.get("COLOR", "none")
    """})
    first = invoke(client, name)
    assert first.text == "none"
    r = client.put(f"{API}/functions/{name}", json={"environmentVariables": {"COLOR": "red"}})
    assert r.status_code == 200
    assert r.json()["codeChecksum"] == first.headers["x-fc-code-checksum"]
    second = invoke(client, name)
    assert second.text == "red"
    assert second.headers["x-funclet-start-kind"] == "cold"


def test_update_is_validated_too(client: httpx.Client) -> None:
    name = deploy(client, HELLO)
    r = client.put(f"{API}/functions/{name}", json={"handler": "missing.handler"})
    assert r.status_code == 400
    assert client.get(f"{API}/functions/{name}").json()["handler"] == "index.handler"
    assert client.put(f"{API}/functions/nope-{name}", json={}).status_code == 404


def test_delete_removes_the_function(client: httpx.Client) -> None:
    name = deploy(client, HELLO)
    invoke(client, name)
    assert client.delete(f"{API}/functions/{name}").status_code == 204
    assert client.get(f"{API}/functions/{name}").status_code == 404
    assert invoke(client, name).json()["Code"] == "FunctionNotFound"
    assert client.delete(f"{API}/functions/{name}").status_code == 404


def _zip_with(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("index.py", "def handler(e, c):\n    return 1\n")
        for name, data in entries:
            info = zipfile.ZipInfo("x")
            info.filename = name  # bypass zipfile's own normalisation
            zf.writestr(info, data)
    return buf.getvalue()


def _damaged(how: str, method: int = zipfile.ZIP_STORED) -> bytes:
    """HELLO plus ``data.bin``, damaged: its data, its method, its flags, its link."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in HELLO.items():
            zf.writestr(name, content, zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo("data.bin")
        info.compress_type = method
        if how in ("link", "nul link"):
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, {"link": b"\xff\xfe", "nul link": b"a\0b"}.get(how, b"abc" * 400))
        offset = zf.getinfo("data.bin").header_offset
    out = bytearray(buf.getvalue())
    central = out.rindex(b"PK\x01\x02", 0, out.index(b"PK\x05\x06"))
    if how == "data":
        out[offset + 30 + len("data.bin") + 5] ^= 0xFF
    elif how == "method":
        out[offset + 8:offset + 10] = out[central + 10:central + 12] = (99).to_bytes(2, "little")
    elif how == "encrypted":
        out[offset + 6] |= 1
        out[central + 8] |= 1
    return bytes(out)


REFUSED_PACKAGES = {
    "bad crc": (_damaged("data"), "cannot be read, the zip is damaged: BadZipFile: Bad CRC-32"),
    "corrupt deflate": (_damaged("data", zipfile.ZIP_DEFLATED), "the zip is damaged"),
    "compression method 99": (_damaged("method"), "compression method 99"),
    "encrypted": (_damaged("encrypted"), "is encrypted"),
    "truncated": (make_zip(HELLO)[:-30], "not a valid zip"),
    "symlink not utf-8": (_damaged("link"), "not UTF-8"),
    "symlink with nul": (_damaged("nul link"), "NUL"),
    "not a zip": (b"this is not a zip", "not a valid zip"),
    "parent traversal": (_zip_with([("../evil.py", b"x")]), "outside the package"),
    "nested traversal": (_zip_with([("a/../../evil.py", b"x")]), "outside the package"),
    "absolute path": (_zip_with([("/etc/evil.py", b"x")]), "absolute path"),
    "symlink outside": (make_zip(HELLO, symlinks={"link": "../../etc/passwd"}),
                        "outside the package"),
    "absolute symlink": (make_zip(HELLO, symlinks={"link": "/etc/passwd"}), "absolute path"),
    "write through a symlink chain": (
        make_zip({**HELLO, "sub/up/PWNED": "x"}, symlinks={"sub/l": "..", "sub/up": "l/.."}),
        "which is a symlink"),
    "file under a file": (make_zip({**HELLO, "a": "1", "a/b": "2"}), "which is a file"),
    "too big unpacked": (make_zip({**HELLO, "big.bin": b"\0" * (21 * 1024 * 1024)}),
                         "over the limit"),
    "compression ratio": (make_zip({**HELLO, "zeros.bin": b"\0" * (5 * 1024 * 1024)}),
                          "compression ratio"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_PACKAGES))
def test_bad_packages_are_refused_and_nothing_is_stored(
    client: httpx.Client, server: Server, case: str
) -> None:
    data, message = REFUSED_PACKAGES[case]
    packages = server.data_dir / "code" / "packages"
    unpacked = server.data_dir / "code" / "unpacked"
    before = set(packages.iterdir())
    before_unpacked = set(unpacked.iterdir())
    name = unique()
    body = create_body(name, HELLO)
    body["code"] = {"zipFile": b64(data)}
    r = client.post(f"{API}/functions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["Code"] == "InvalidArgument"
    assert message in r.json()["Message"]
    assert client.get(f"{API}/functions/{name}").status_code == 404
    assert set(packages.iterdir()) == before
    assert set(unpacked.iterdir()) == before_unpacked  # no .unpack-* staging folder either
    # an update with it is refused the same way, and the function keeps its code
    deploy(client, HELLO, name=name)
    r = client.put(f"{API}/functions/{name}", json={"code": {"zipFile": b64(data)}})
    assert r.status_code == 400 and message in r.json()["Message"], r.text
    assert invoke(client, name).status_code == 200
    assert not [p for p in unpacked.iterdir() if p.name.startswith(".unpack-")]


REFUSED_CONFIGS = {
    "unknown runtime": ({"runtime": "cobol85"}, "supported runtimes: "),
    "malformed handler": ({"handler": "nodot"}, "malformed"),
    "handler module missing": ({"handler": "main.handler"}, "module 'main' is not in"),
    "initializer module missing": (
        {"instanceLifecycleConfig": {"initializer": {"handler": "init.go", "timeout": 3}}},
        "module 'init' is not in"),
    "timeout too long": ({"timeout": 86_401}, "timeout must be between"),
    "memory not a step": ({"memorySize": 200}, "multiple of 64"),
    "concurrency too high": ({"instanceConcurrency": 201}, "instanceConcurrency"),
    "bad name": ({"functionName": "1-bad name"}, "functionName"),
    "bad env": ({"environmentVariables": {"A B": "x"}}, "environmentVariables"),
    "no code": ({"code": None}, "code.zipFile is required"),
    "bad base64": ({"code": {"zipFile": "%%%"}}, "not valid base64"),
    # a '$' in a pattern matches before a final newline: every check is a full match
    "handler ending in a newline": ({"handler": "index.handler\n"}, "malformed"),
    "name ending in a newline": ({"functionName": "fn\n"}, "functionName"),
    "env name ending in a newline": ({"environmentVariables": {"A\n": "x"}},
                                     "environmentVariables"),
    "env value with NUL": ({"environmentVariables": {"A": "x\0y"}}, "without NUL"),
    "command with NUL": ({"runtime": "custom", "customRuntimeConfig": {"command": ["a\0"]}},
                         "without NUL"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CONFIGS))
def test_bad_configurations_are_refused_with_a_clear_400(client: httpx.Client, case: str) -> None:
    changes, message = REFUSED_CONFIGS[case]
    body = create_body(unique(), HELLO)
    body.update(changes)
    if body.get("code") is None:
        body.pop("code")
    r = client.post(f"{API}/functions", json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["Message"], r.json()
    if case == "unknown runtime":
        assert "python3.11" in r.json()["Message"]


def test_malformed_json_and_unknown_routes_get_fc_errors(client: httpx.Client) -> None:
    r = client.post(f"{API}/functions", content=b"{not json")
    assert r.status_code == 400 and r.json()["Code"] == "InvalidArgument"
    r = client.get(f"{API}/nothing-here")
    assert r.status_code == 404 and set(r.json()) == {"Code", "Message", "RequestId"}


def test_packages_with_internal_symlinks_and_subpackages_deploy(client: httpx.Client) -> None:
    files = {
        "index.py": "from pkg.mod import VALUE\n\ndef handler(e, c):\n    return VALUE\n",
        "pkg/__init__.py": "",
        "pkg/mod.py": "VALUE = 'deep'\n",
    }
    data = make_zip(files, symlinks={"alias.py": "pkg/mod.py"})
    body = create_body(unique(), files)
    body["code"] = {"zipFile": b64(data)}
    r = client.post(f"{API}/functions", json=body)
    assert r.status_code == 200, r.text
    assert invoke(client, body["functionName"]).text == "deep"


def test_same_package_is_unpacked_once(client: httpx.Client, server: Server) -> None:
    files = {"index.py": f"# {unique()}\ndef handler(e, c):\n    return 1\n"}
    a = deploy(client, files)
    b = deploy(client, files)
    ca = client.get(f"{API}/functions/{a}").json()["codeSha256"]
    cb = client.get(f"{API}/functions/{b}").json()["codeSha256"]
    assert ca == cb
    unpacked = Path(server.data_dir / "code" / "unpacked")
    assert len([p for p in unpacked.iterdir() if p.name == ca]) == 1


@pytest.mark.parametrize("name", ["a" * 300, "bad name", "bad;name", "ünïcode", "-x"])
def test_odd_function_names_in_paths_are_400_never_500(client: httpx.Client, name: str) -> None:
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/invocations"),
                         ("GET", "/instances"), ("GET", "/invocations"),
                         ("GET", "/concurrency")):
        r = client.request(method, f"{API}/functions/{name}{path}", json={})
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert r.json()["Code"] == "InvalidArgument"


def test_very_long_headers_and_odd_queries_are_not_500(client: httpx.Client) -> None:
    r = client.get(f"{API}/functions", params={"limit": "ten"})
    assert r.status_code == 400
    r = client.get(f"{API}/functions", params={"nextToken": "%%%"})
    assert r.status_code == 400
    r = client.get(f"{API}/functions", headers={"x-long": "v" * 60_000})
    assert r.status_code in (200, 400, 431)


@pytest.mark.parametrize("token", [
    "%%%", b64(b"\xff\xfe"), b64(b"abc"), b64("²:x".encode()), b64(b"9" * 30 + b":x"),
    b64(b"12:"), b64(b"-1:x"),
])
def test_a_bad_next_token_is_a_400_on_every_list(client: httpx.Client, token: str) -> None:
    name = deploy(client, {"index.py": "def handler(event, context):\n    return 'ok'\n"})
    time_ordered = ("async-tasks", "invocations")
    for path in ("/functions", f"/functions/{name}/triggers", "/async-invoke-configs",
                 *(f"/functions/{name}/{p}" for p in time_ordered)):
        r = client.get(f"{API}{path}", params={"nextToken": token})
        if r.status_code == 200:  # any text is a name to page after
            assert not path.endswith(time_ordered), (path, r.text)
            continue
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["Code"] == "InvalidArgument", r.text
        assert r.json()["Message"].startswith("invalid nextToken"), r.text


def test_a_function_from_before_crc64_gets_its_code_checksum_at_start(tmp_path: Path) -> None:
    """A row stored before FC's codeChecksum was kept (NULL) is filled in from its
    package when funclet starts."""
    from sqlalchemy import create_engine, text

    from funclet.store import migrate
    from tests import databases
    from tests.conftest import start_server, stop_server

    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            name = deploy(c, {"index.py": "def handler(e, c):\n    return 1\n"})
            expected = c.get(f"{API}/functions/{name}").json()["codeChecksum"]
    finally:
        stop_server(server)
    url = databases.server_env(tmp_path).get("FUNCLET_DATABASE_URL") or (
        f"sqlite:///{tmp_path / 'data' / 'funclet.db'}")
    engine = create_engine(migrate.sync_url(url.replace("postgresql://", "postgresql+psycopg://")))
    with engine.begin() as conn:
        conn.execute(text("UPDATE functions SET code_crc64 = NULL"))
    engine.dispose()
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get(f"{API}/functions/{name}").json()["codeChecksum"] == expected
    finally:
        stop_server(server)
