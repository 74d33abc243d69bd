"""The ``funclet`` command: serve the platform, deploy and invoke functions, read logs."""

from __future__ import annotations

import base64
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from funclet import __version__
from funclet.cli import layers, triggers, versions
from funclet.cli.client import (
    DEFAULT_ENDPOINT,
    Client,
    CliError,
    Endpoint,
    Output,
    client_for,
    err,
    group,
    options,
    out,
    show,
)

if TYPE_CHECKING:
    from funclet.manifests import Planned

app = typer.Typer(
    help="funclet: a self-hosted function compute platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts as written: their [default: …] stay
)
app.add_typer(triggers.app, name="trigger")
app.add_typer(versions.versions, name="version")
app.add_typer(versions.aliases, name="alias")
app.add_typer(layers.app, name="layer")


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"funclet {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="FUNCLET_API_TOKEN",
                     help="API token, when funclet requires authentication."),
    ] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")]
    = False,
) -> None:
    options["token"] = token


def _client(endpoint: str) -> Client:
    return client_for(endpoint)


def _validation_message(exc: ValueError) -> str:
    """A settings error in one line: each bad setting and why."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: "
                         f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
    return str(exc)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 9000].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Metadata and code packages [default: ./.funclet].")
    ] = None,
    examples: Annotated[
        Path | None, typer.Option(help="Deploy each folder here that has a function.json.")
    ] = None,
    max_instances: Annotated[
        int | None, typer.Option(help="Account-wide limit of running instances [default: 100].")
    ] = None,
    require_auth: Annotated[
        bool | None,
        typer.Option("--require-auth/--no-auth",
                     help="Require credentials [default: only when not on loopback]."),
    ] = None,
    expose_host_port: Annotated[
        list[int] | None,
        typer.Option(help="A host port instances may reach, at host.funclet.internal:PORT "
                          "(repeatable) [default: none]."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="postgresql://user@host:5432/database, shared by a cluster's "
                          "nodes [default: SQLite in the data folder]."),
    ] = None,
    code_store: Annotated[
        str | None,
        typer.Option(help="s3://bucket/prefix for code packages (AWS_ENDPOINT_URL and the "
                          "other AWS_* variables reach it) [default: the data folder]."),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(help="This node's name among the platform's nodes "
                          "[default: host name:port]."),
    ] = None,
) -> None:
    """Run the platform (API, instances, everything) in the foreground."""
    from funclet.codestore import CodeStoreUnusable
    from funclet.config import load_settings
    from funclet.errors import DatabaseUnusable, DataFolderInUse
    from funclet.server import serve as run

    try:
        settings = load_settings(
            host=host, port=port, data_dir=data_dir, max_instances=max_instances,
            require_auth=require_auth, expose_host_ports=expose_host_port or None,
            database_url=database_url, code_store=code_store, node_id=node_id,
        )
    except ValueError as exc:
        raise CliError(f"invalid configuration: {_validation_message(exc)}") from None
    try:
        run(settings, examples)
    except (DataFolderInUse, DatabaseUnusable, CodeStoreUnusable) as exc:
        raise CliError(str(exc)) from None


db = group("The metadata database: its schema.")
app.add_typer(db, name="db")


@db.command("upgrade")
def db_upgrade(
    database_url: Annotated[
        str | None,
        typer.Option(help="postgresql://user@host:5432/database [default: FUNCLET_DATABASE_URL, "
                          "or SQLite in the data folder]."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the SQLite database is [default: ./.funclet].")
    ] = None,
) -> None:
    """Bring the database's schema to this funclet's (serve does it too, at start)."""
    from funclet.config import load_settings
    from funclet.errors import DatabaseUnusable
    from funclet.store import migrate

    try:
        settings = load_settings(database_url=database_url, data_dir=data_dir)
    except ValueError as exc:
        raise CliError(f"invalid configuration: {_validation_message(exc)}") from None
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        before, after = migrate.upgrade(url)
    except DatabaseUnusable as exc:
        raise CliError(str(exc)) from None
    name = migrate.where(url)
    name = name[:1].upper() + name[1:]
    if before == after:
        typer.echo(f"{name} is at schema revision {after}, the newest this funclet knows.")
    else:
        typer.echo(f"{name}: schema revision {before or 'none (empty)'} -> {after}.")


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--env takes KEY=VALUE, got '{pair}'")
        env[key] = value
    return env


@app.command()
def deploy(
    source: Annotated[Path | None, typer.Argument(
        help="A folder (zipped for you) or a .zip file.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="A project manifest: Serverless Devs' s.yaml (its fc3 "
                             "resources) or an AWS SAM template.yaml. Prints a plan, then "
                             "deploys what changed.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Function name [default: folder name].")
    ] = None,
    runtime: Annotated[str | None, typer.Option(help="e.g. python3.11.")] = None,
    handler: Annotated[
        str | None, typer.Option(help="module.function, e.g. index.handler.")
    ] = None,
    timeout: Annotated[int | None, typer.Option(help="Seconds, 1-86400.")] = None,
    memory: Annotated[int | None, typer.Option(help="MB, 128-32768, multiple of 64.")] = None,
    initializer: Annotated[
        str | None, typer.Option(help="module.function run once per instance.")
    ] = None,
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    layer: Annotated[list[str] | None, typer.Option(
        help="A layer version's ARN (see 'funclet layer ls'), repeatable, in order.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Create a function, or update it if it exists (or every function of a manifest)."""
    if file is not None:
        if source is not None:
            raise CliError("give a folder (or zip) or --file, not both")
        _deploy_manifest(_client(endpoint), file)
        return
    if source is None:
        raise CliError("give a folder or a .zip to deploy, or --file s.yaml")
    flags = {"runtime": runtime, "handler": handler, "timeout": timeout, "memorySize": memory}
    extra: dict[str, Any] = {}
    if initializer:
        extra["instanceLifecycleConfig"] = {"initializer": {"handler": initializer,
                                                             "timeout": 30}}
    if env:
        extra["environmentVariables"] = _parse_env(env)
    if layer:
        extra["layers"] = list(layer)
    _deploy(_client(endpoint), source, name,
            {**{k: v for k, v in flags.items() if v is not None}, **extra})


def _deploy(client: Client, source: Path, name: str | None, changes: dict[str, Any],
            with_triggers: bool = True) -> str:
    """Deploy a folder or a zip (with its function.json, ``changes`` on top): create the
    function, or update what the folder and ``changes`` name. Its name."""
    from funclet.packaging import Manifest, read_full_manifest

    if source.is_dir():
        manifest = read_full_manifest(source)
    elif source.is_file():
        manifest = Manifest({})
    else:
        raise CliError(f"{source} is neither a folder nor a file")
    body = manifest.function
    name = name or body.get("functionName") or source.resolve().stem
    for key, value in changes.items():
        if key == "environmentVariables":
            value = {**body.get(key, {}), **value}
        elif key == "instanceLifecycleConfig":
            value = {**body.get(key, {}), **value}
        body[key] = value
    # Defaults for a new function only: a redeploy changes what the flags and the
    # function.json name, nothing else.
    defaults = {k: v for k, v in (
        ("runtime", f"python{sys.version_info.major}.{sys.version_info.minor}"),
        ("handler", "index.handler")) if k not in body}
    runtime_now = body.get("runtime") or _runtime_of(client, name) or defaults["runtime"]
    _upload(client, name, body, defaults, _package(source, runtime_now))
    if not with_triggers:
        return name
    if manifest.reserved_concurrency is not None:
        client.json("PUT", f"/functions/{name}/concurrency",
                    json={"reservedConcurrency": manifest.reserved_concurrency})
    for trigger in manifest.triggers:
        _put_trigger(client, name, trigger)
    return name


@app.command()
def dev(
    source: Annotated[Path | None, typer.Argument(help="The function's folder.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="A manifest (s.yaml, template.yaml): all its functions.")]
    = None,
    name: Annotated[
        str | None, typer.Option(help="Function name [default: function.json's, or the "
                                      "folder name].")
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Deploy a folder (or a manifest's functions), then again on every save: only the
    function whose code changed (the whole manifest when it changes); print each
    invocation's log as it happens. Ctrl-C ends it (the functions stay)."""
    import watchfiles

    client = _client(endpoint)
    if file is not None:
        from funclet.manifests import ManifestError, load

        _deploy_manifest(client, file)
        try:
            folders = {fn.code: fn for fn in load(file)[0]}
        except ManifestError as exc:
            raise CliError(str(exc)) from None
        names = [fn.name for fn in folders.values()]
        watched: list[Path] = [file.resolve(), *folders]
    elif source is not None and source.is_dir():
        names = [_deploy(client, source, name, {})]
        folders, watched = {}, [source]
    else:
        raise CliError("give a folder, or --file with a manifest")
    err.print(f"Watching {', '.join(map(str, watched))} for changes; invocations of "
              f"{', '.join(names)} are logged here. Ctrl-C to stop.", markup=False,
              highlight=False)
    seen = {r["requestId"] for n in names for r in _recent(client, n)}
    for changes in watchfiles.watch(*watched, debounce=50, step=20, rust_timeout=500,
                                    yield_on_timeout=True, watch_filter=_code_change):
        if changes:
            started = time.monotonic()
            try:
                if file is None:
                    assert source is not None
                    _deploy(client, source, names[0], {}, with_triggers=False)
                elif any(Path(p) == file.resolve() for _, p in changes):
                    _deploy_manifest(client, file)
                else:
                    for folder, fn in folders.items():
                        if any(Path(p).is_relative_to(folder) for _, p in changes):
                            _upload(client, fn.name, fn.body, {}, _manifest_package(
                                fn, str(fn.body.get("runtime", ""))))
            except CliError as exc:  # a broken save: say so, keep watching
                err.print(f"Error: {exc}", markup=False, highlight=False)
                continue
            err.print(f"Live {(time.monotonic() - started) * 1000:.0f} ms after the save.",
                      markup=False, highlight=False)
        for name_ in names:
            for rec in reversed(_recent(client, name_)):
                if rec["requestId"] not in seen:
                    seen.add(rec["requestId"])
                    full = client.json("GET",
                                       f"/functions/{name_}/invocations/{rec['requestId']}")
                    _print_log(full["log"])


def _recent(client: Client, name: str) -> list[dict[str, Any]]:
    return list(client.json("GET", f"/functions/{name}/invocations",
                            params={"limit": 20})["invocations"])


def _code_change(change: Any, path: str) -> bool:
    """Changes that make a new package: not caches, VCS folders or editors' swap files."""
    parts = Path(path).parts
    return not any(p in ("__pycache__", ".git", ".venv", ".pytest_cache") for p in parts) \
        and not path.endswith((".swp", ".swx", "~", ".pyc"))


def _deploy_manifest(client: Client, path: Path) -> None:
    """Every function of a manifest: the plan (create / update / unchanged), then each
    one that is not unchanged, with its triggers, async config, concurrency, provisioned
    instances and custom domain."""
    from funclet.manifests import ManifestError, load

    try:
        planned, warnings = load(path)
    except ManifestError as exc:
        raise CliError(str(exc)) from None
    for warning in warnings:
        err.print(f"Warning: {warning}", markup=False, highlight=False)
    packages, plan = {}, {}
    with _progress("Packaging", len(planned)) as step:
        for fn in planned:
            step(fn.name)
            packages[fn.name], plan[fn.name] = _package_planned(client, fn)
    out.print(f"Plan for {path}:", markup=False, highlight=False)
    for fn in planned:
        out.print(f"  {plan[fn.name]:<9} {fn.name} ({fn.resource})", markup=False,
                  highlight=False)
    with _progress("Deploying", len(planned)) as step:
        for fn in planned:
            step(fn.name)
            _deploy_planned(client, fn, plan[fn.name], packages[fn.name])


def _package_planned(client: Client, fn: Planned) -> tuple[bytes, str]:
    """A manifest function's package, and whether it is a create, an update or
    unchanged (its code and every field it names as deployed)."""
    from funclet.codestore import crc64

    try:
        current = client.json("GET", f"/functions/{fn.name}")
    except CliError as exc:
        if not str(exc).startswith("FunctionNotFound"):
            raise
        current = None
    runtime = fn.body.get("runtime") or (current or {}).get("runtime") or "python3.11"
    package = _manifest_package(fn, runtime)
    same = current is not None and current["codeChecksum"] == crc64(package) and all(
        current.get(k) == v for k, v in fn.body.items())
    return package, "create" if current is None else "unchanged" if same else "update"


def _deploy_planned(client: Client, fn: Planned, plan: str, package: bytes) -> None:
    """A manifest function: its code and fields (unless unchanged), then its triggers,
    async config, concurrency, provisioned instances and custom domain."""
    if plan != "unchanged":
        _upload(client, fn.name, fn.body, {"handler": "index.handler"}, package)
    for trigger in fn.triggers:
        _put_trigger(client, fn.name, trigger)
    if fn.async_config is not None:
        config = dict(fn.async_config)
        qualifier = config.pop("qualifier", None)
        client.json("PUT", f"/functions/{fn.name}/async-invoke-config", json=config,
                    params={"qualifier": qualifier} if qualifier else None)
    if fn.reserved_concurrency is not None:
        client.json("PUT", f"/functions/{fn.name}/concurrency",
                    json={"reservedConcurrency": fn.reserved_concurrency})
    if fn.provision_target is not None:
        client.json("PUT", f"/functions/{fn.name}/provision-config",
                    json={"target": fn.provision_target})
    if fn.custom_domain is not None:
        domain = fn.custom_domain
        try:
            client.json("POST", "/custom-domains", json=domain)
        except CliError as exc:
            if not str(exc).startswith("DomainNameAlreadyExists"):
                raise
            client.json("PUT", f"/custom-domains/{domain['domainName']}",
                        json={k: v for k, v in domain.items() if k != "domainName"})
        out.print(f"  custom domain {domain['domainName']}", markup=False,
                  highlight=False)


_LAMBDA_BOOTSTRAP = {
    "python": """#!/bin/sh
# Written by funclet deploy -f (a SAM function): AWS's Python runtime client, unchanged,
# asks funclet's Lambda Runtime API for invocations.
cd "$LAMBDA_TASK_ROOT"
exec python3 -m awslambdaric "$_HANDLER"
""",
    "node": """#!/bin/sh
# Written by funclet deploy -f (a SAM function): AWS's Node.js runtime client, unchanged,
# asks funclet's Lambda Runtime API for invocations.
cd "$LAMBDA_TASK_ROOT"
exec node .funclet-ric/node_modules/aws-lambda-ric/index.mjs "$_HANDLER"
""",
}
# AWS's Node.js runtime client, installed once (npm builds its native part, about a
# minute) and shared by every SAM Node.js function, beside the function's own modules.
_NODE_RIC = b'{"dependencies": {"aws-lambda-ric": "4.0.2"}}'


def _manifest_package(fn: Planned, runtime: str) -> bytes:
    """A manifest function's package: with AWS's runtime client for a SAM function."""
    if fn.lambda_client is None:
        return _package(fn.code, runtime)
    return _lambda_package(fn.code, fn.lambda_client)


def _lambda_package(folder: Path, language: str) -> bytes:
    """A SAM function's folder with AWS's runtime client for ``language`` beside it (its
    own requirements or package.json installed too), and a ``bootstrap`` unless it has
    its own."""
    import io
    import tempfile
    import zipfile

    from funclet.packaging import (
        PACKAGE_JSON,
        REQUIREMENTS,
        DependencyError,
        dependency_cache,
        vendor_requirements,
        zip_dir,
    )

    beside: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory() as staging:
        try:
            if language == "python":
                own = folder / REQUIREMENTS
                wanted = (own.read_text() if own.exists() else "") + "\nawslambdaric>=2.0\n"
                (Path(staging) / REQUIREMENTS).write_text(wanted)
                with _step(f"Installing the dependencies of {folder} and AWS's runtime "
                           "client"):
                    vendored = vendor_requirements(Path(staging), "custom.lambda",
                                                   dependency_cache())
            else:
                (Path(staging) / PACKAGE_JSON).write_bytes(_NODE_RIC)
                with _step(f"Installing the dependencies of {folder} and AWS's runtime "
                           "client"):
                    vendored = vendor_requirements(folder, "nodejs", dependency_cache())
                    ric = vendor_requirements(Path(staging), "custom.lambda",
                                              dependency_cache())
                assert ric is not None
                beside.append((".funclet-ric/", ric))
        except DependencyError as exc:
            raise CliError(str(exc)) from None
        data = zip_dir(folder, vendored, beside)
    if (folder / "bootstrap").exists():
        return data
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as archive:
        info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        archive.writestr(info, _LAMBDA_BOOTSTRAP[language])
    return buf.getvalue()


def _package(source: Path, runtime: str) -> bytes:
    """A folder zipped, its dependencies installed for ``runtime`` (or a zip, as it is)."""
    from funclet.packaging import DependencyError, dependency_cache, vendor_requirements, zip_dir

    if not source.is_dir():
        return source.read_bytes()
    try:
        with _step(f"Installing the dependencies of {source} for {runtime}",
                   needed=any((source / f).exists()
                              for f in ("requirements.txt", "package.json"))):
            vendored = vendor_requirements(source, runtime, dependency_cache())
    except DependencyError as exc:
        raise CliError(str(exc)) from None
    return zip_dir(source, vendored)


def _upload(client: Client, name: str, body: dict[str, Any], defaults: dict[str, Any],
            data: bytes) -> dict[str, Any]:
    """Create the function (``defaults`` under ``body``), or update what ``body`` names."""
    body = {**body, "code": {"zipFile": base64.b64encode(data).decode()}}
    try:
        fn: dict[str, Any] = client.json("POST", "/functions",
                                         json={**defaults, **body, "functionName": name})
        verb = "Created"
    except CliError as exc:
        if not str(exc).startswith("FunctionAlreadyExists"):
            raise
        body.pop("functionName", None)
        fn = client.json("PUT", f"/functions/{name}", json=body)
        verb = "Updated"
    out.print(
        f"{verb} [bold]{name}[/] ({fn['runtime']}, {fn['handler']}, {fn['codeSize']} bytes, "
        f"checksum {fn['codeChecksum']})."
    )
    return fn


def _put_trigger(client: Client, name: str, trigger: dict[str, Any]) -> None:
    try:
        client.json("POST", f"/functions/{name}/triggers", json=trigger)
    except CliError as exc:
        if not str(exc).startswith("TriggerAlreadyExists"):
            raise
        client.json("PUT", f"/functions/{name}/triggers/{trigger['triggerName']}",
                    json={k: v for k, v in trigger.items() if k != "triggerName"})
    out.print(f"  trigger {trigger['triggerName']} ({trigger.get('triggerType')})")


def _runtime_of(client: Client, name: str) -> str | None:
    """The runtime of the function as deployed (its dependencies are built for it)."""
    try:
        return str(client.json("GET", f"/functions/{name}")["runtime"])
    except CliError:
        return None


_BARS: list[Callable[[str], None]] = []  # the progress bar on the terminal, if one is


@contextlib.contextmanager
def _progress(title: str, total: int) -> Iterator[Callable[[str], None]]:
    """A progress bar over ``total`` items on a terminal (``step(item)`` starts the next
    one; what a step does shows beside the bar); off one, a line per item."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    if not err.is_terminal:
        done = iter(range(1, total + 1))
        yield lambda item: err.print(f"{title} {next(done)}/{total}: {item}", markup=False,
                                     highlight=False)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task(title, total=total)
        started = [False]

        def step(item: str) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=f"{title} {item}")

        def detail(what: str) -> None:
            progress.update(task, description=f"{title}: {what}")

        _BARS.append(detail)
        try:
            yield step
        finally:
            _BARS.remove(detail)
        progress.update(task, completed=total, description=f"{title}: done")


@contextlib.contextmanager
def _step(what: str, needed: bool = True) -> Iterator[None]:
    """A spinner on a terminal (or, under a progress bar, the bar's text); off one, a
    line when the step starts and one when it ends."""
    if not needed:
        yield
        return
    started = time.monotonic()
    if _BARS:
        _BARS[-1](what)
        yield
        return
    if err.is_terminal:
        with err.status(f"{what} ..."):
            yield
        return
    err.print(f"{what} ...", markup=False, highlight=False)
    yield
    err.print(f"{what}: done in {time.monotonic() - started:.1f} s.", markup=False,
              highlight=False)


@app.command()
def invoke(
    name: str,
    payload: Annotated[str | None, typer.Option(help="The event, e.g. a JSON document.")] = None,
    payload_file: Annotated[Path | None, typer.Option(help="Read the event from a file.")] = None,
    log: Annotated[bool, typer.Option("--log", help="Print the invocation's log.")] = False,
    run_async: Annotated[
        bool, typer.Option("--async", help="Queue it (202) and print the task id.")
    ] = False,
    task_id: Annotated[
        str | None, typer.Option(help="With --async: an id that makes the call idempotent.")
    ] = None,
    delay: Annotated[
        int | None, typer.Option(help="With --async: seconds before the first attempt.")
    ] = None,
    qualifier: Annotated[
        str | None, typer.Option(help="A version or an alias to run (default: LATEST).")
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Invoke a function: synchronously (print its result) or --async (print the task id)."""
    params = {"qualifier": qualifier} if qualifier else {}
    if payload is not None and payload_file is not None:
        raise CliError("give --payload or --payload-file, not both")
    try:
        event = payload_file.read_bytes() if payload_file else (payload or "").encode()
    except OSError as exc:
        raise CliError(f"cannot read {payload_file}: {exc.strerror}") from None
    if run_async:
        headers = {"x-fc-invocation-type": "Async"}
        if task_id:
            headers["x-fc-async-task-id"] = task_id
        if delay is not None:
            headers["x-fc-async-delay"] = str(delay)
        response = _client(endpoint).request(
            "POST", f"/functions/{name}/invocations", content=event, headers=headers,
            params=params)
        accepted = response.headers["x-fc-async-task-id"]
        again = response.headers.get("x-funclet-async-task-duplicate")
        out.print(f"{'Already accepted' if again else 'Accepted'} async task {accepted} "
                  f"(request {response.headers['x-fc-request-id']}).")
        return
    headers = {"x-fc-invocation-type": "Sync"}
    if log:
        headers["x-fc-log-type"] = "Tail"
    response = _client(endpoint).request(
        "POST", f"/functions/{name}/invocations", content=event, headers=headers,
        params=params)
    if log and response.headers.get("x-fc-log-result"):
        sys.stderr.write(base64.b64decode(response.headers["x-fc-log-result"]).decode(
            errors="replace"))
        sys.stderr.flush()
    sys.stdout.buffer.write(response.content)
    if response.content and not response.content.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    kind = response.headers.get("x-funclet-start-kind", "")
    err.print(
        f"[dim]request {response.headers.get('x-fc-request-id')}, version "
        f"{response.headers.get('x-fc-invocation-service-version')}, {kind} start, "
        f"{response.headers.get('x-funclet-duration-ms')} ms[/]"
    )
    error_type = response.headers.get("x-fc-error-type")
    if error_type:
        detail = response.json()
        raise CliError(f"{error_type}: {detail.get('errorType')}: {detail.get('errorMessage')}")


def _functions(client: Client, prefix: str = "") -> Iterator[dict[str, Any]]:
    """Every function (whose name starts with ``prefix``), following ``nextToken``."""
    return client.pages("/functions", "functions", prefix=prefix)


@app.command("ls")
def list_functions(
    prefix: Annotated[str, typer.Option(help="Only names starting with this.")] = "",
    output: Output = "table",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List functions."""
    items = list(_functions(_client(endpoint), prefix))
    show(["name", "runtime", "handler", "memory", "timeout", "modified"],
         [[fn["functionName"], fn["runtime"], fn["handler"], f"{fn['memorySize']} MB",
           f"{fn['timeout']} s", fn["lastModifiedTime"]] for fn in items], items, output)


@app.command()
def info(name: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Show a function's configuration as JSON."""
    fn = _client(endpoint).json("GET", f"/functions/{name}")
    out.print_json(data=fn)


@app.command("rm")
def remove(name: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Delete a function; its instances stop."""
    _client(endpoint).request("DELETE", f"/functions/{name}")
    out.print(f"Deleted [bold]{name}[/].")


@app.command()
def logs(
    name: str,
    request_id: Annotated[str | None, typer.Option(help="One invocation's log.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new logs.")] = False,
    limit: Annotated[int, typer.Option(help="How many recent invocations.")] = 10,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Print invocation logs: one, the recent ones, or new ones as they come."""
    client = _client(endpoint)
    if request_id:
        rec = client.json("GET", f"/functions/{name}/invocations/{request_id}")
        _print_log(rec["log"])
        return
    seen: set[str] = set()
    while True:
        page = client.json("GET", f"/functions/{name}/invocations", params={"limit": limit})
        for rec in reversed(page["invocations"]):
            if rec["requestId"] in seen:
                continue
            seen.add(rec["requestId"])
            full = client.json("GET", f"/functions/{name}/invocations/{rec['requestId']}")
            _print_log(full["log"])
        if not follow:
            return
        time.sleep(1.0)


def _print_log(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()


@app.command()
def invocations(
    name: str,
    status: Annotated[str | None, typer.Option(help="succeeded or failed.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    output: Output = "table",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List a function's recent invocations, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    items = _client(endpoint).json("GET", f"/functions/{name}/invocations",
                                   params=params)["invocations"]
    show(["request id", "started", "status", "start", "init ms", "run ms", "error"],
         [[rec["requestId"], rec["startedTime"], rec["status"], rec["startKind"] or "",
           f"{rec['initDurationMs']:.1f}" if rec["startKind"] == "cold" else "",
           f"{rec['durationMs']:.1f}", rec["errorType"] or ""] for rec in items], items, output)


@app.command()
def instances(
    name: Annotated[str | None, typer.Argument(help="One function [default: all].")] = None,
    output: Output = "table",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List instances: live ones, then recently stopped ones with their stop reason."""
    client = _client(endpoint)
    names = [name] if name else [f["functionName"] for f in _functions(client)]
    items = [{"functionName": fn, **inst} for fn in names
             for inst in client.json("GET", f"/functions/{fn}/instances")["instances"]]
    show(["function", "instance", "state", "stop reason", "created", "destroyed"],
         [[i["functionName"], i["instanceId"], i["state"], i["stopReason"] or "",
           _ms(i["createdTimeMs"]), _ms(i["destroyedTimeMs"])] for i in items], items, output)


@app.command()
def nodes(output: Output = "table", endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """List the platform's nodes: alive, stopped, or dead (no heartbeat for a while)."""
    items = _client(endpoint).json("GET", "/nodes")["nodes"]
    show(["node", "address", "state", "instances", "started", "last heartbeat", "version"],
         [[node["nodeId"] + (" (this one)" if node["self"] else ""), node["address"],
           node["state"], str(node["instances"]), _ms(node["startedTimeMs"]),
           _ms(node["lastHeartbeatTimeMs"]), node["version"]] for node in items], items, output)


@app.command()
def tasks(
    name: str,
    status: Annotated[str | None, typer.Option(help="e.g. Succeeded, Failed, Retrying.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    output: Output = "table",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """List a function's async tasks, newest first (each with the request id its
    attempts run and log under: 'funclet logs NAME --request-id ID')."""
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    items = _client(endpoint).json("GET", f"/functions/{name}/async-tasks",
                                   params=params)["tasks"]
    show(["task id", "request id", "status", "retried", "started", "ms", "error"],
         [[t["taskId"], t["requestId"], t["status"], str(t["alreadyRetriedTimes"]),
           _ms(t["startedTime"]), str(t["durationMs"] or ""), t["taskErrorMessage"] or ""]
          for t in items], items, output)


task = group("Show an async task, or stop it.")
app.add_typer(task, name="task")

_FINAL = {"Succeeded", "Failed", "Expired", "Stopped"}


@task.command("show")
def task_show(name: str, task_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Show one async task: its status, events, and the request id its attempts log
    under."""
    out.print_json(data=_client(endpoint).json("GET", f"/functions/{name}/async-tasks/{task_id}"))


@task.command("stop")
def task_stop(name: str, task_id: str, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    """Stop an async task (a running attempt is ended)."""
    client = _client(endpoint)
    path = f"/functions/{name}/async-tasks/{task_id}"
    status = client.json("GET", path)["status"]
    if status in _FINAL:
        out.print(f"Async task {task_id} had already ended ({status}); nothing to stop.")
        return
    client.request("PUT", f"{path}/stop")
    out.print(f"Asked async task {task_id} to stop (it was {status}).")


@app.command("async-config")
def async_config(
    name: str,
    retries: Annotated[int | None, typer.Option(help="maxAsyncRetryAttempts, 0-8.")] = None,
    max_age: Annotated[
        int | None, typer.Option(help="maxAsyncEventAgeInSeconds, 1-604800.")
    ] = None,
    on_success: Annotated[str | None, typer.Option(help="Destination URI.")] = None,
    on_failure: Annotated[str | None, typer.Option(help="Destination URI.")] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
) -> None:
    """Show a function's async invoke config, or set it with the options."""
    client = _client(endpoint)
    path = f"/functions/{name}/async-invoke-config"
    if retries is None and max_age is None and on_success is None and on_failure is None:
        try:
            out.print_json(data=client.json("GET", path))
        except CliError as exc:
            if not str(exc).startswith("AsyncConfigNotFound"):
                raise
            err.print(f"{name} has no async invoke config of its own; these are the "
                      "defaults it runs with:", markup=False, highlight=False)
            from funclet.asyncq.policy import AsyncConfig

            defaults = AsyncConfig().to_fc("")
            out.print_json(data={k: v for k, v in defaults.items() if k != "functionArn"})
        return
    body: dict[str, Any] = {}
    if retries is not None:
        body["maxAsyncRetryAttempts"] = retries
    if max_age is not None:
        body["maxAsyncEventAgeInSeconds"] = max_age
    destinations = {k: {"destination": v} for k, v in
                    (("onSuccess", on_success), ("onFailure", on_failure)) if v}
    if destinations:
        body["destinationConfig"] = destinations
    out.print_json(data=client.json("PUT", path, json=body))


def _ms(ms: int | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def main() -> None:
    try:
        app()
    except CliError as exc:
        err.print(f"Error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except orjson.JSONDecodeError as exc:
        err.print(f"Error: the API answered with something that is not JSON: {exc}", markup=False)
        sys.exit(1)
