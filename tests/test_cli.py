"""The funclet CLI against a running funclet, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Server, free_port
from tests.helpers import unique


def cli(server_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "funclet", *args, "--endpoint", server_url],
        capture_output=True, text=True, timeout=60,
    )


def test_deploy_invoke_inspect_and_remove_a_folder(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "greeter"
    folder.mkdir()
    (folder / "main.py").write_text(
        "import os\n\ndef go(event, context):\n"
        "    print('greeting', event.decode())\n"
        "    return os.environ['WORD'] + ' ' + event.decode()\n"
    )
    name = unique("cli")
    r = cli(server.url, "deploy", str(folder), "--name", name, "--runtime", "python3.11",
            "--handler", "main.go", "--timeout", "5", "--memory", "256", "--env", "WORD=hi")
    assert r.returncode == 0, r.stderr
    assert f"Created {name}" in r.stdout

    r = cli(server.url, "invoke", name, "--payload", "there", "--log")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi there\n"
    assert "FC Invoke Start RequestId" in r.stderr and "greeting there" in r.stderr

    payload = tmp_path / "event.txt"
    payload.write_text("file")
    r = cli(server.url, "invoke", name, "--payload-file", str(payload))
    assert r.stdout == "hi file\n"

    r = cli(server.url, "deploy", str(folder), "--name", name, "--handler", "main.go",
            "--env", "WORD=hello")
    assert r.returncode == 0 and f"Updated {name}" in r.stdout, r.stderr
    assert cli(server.url, "invoke", name, "--payload", "x").stdout == "hello x\n"

    listed = cli(server.url, "ls", "--prefix", name)
    assert name in listed.stdout and "main.go" in listed.stdout
    info = cli(server.url, "info", name)
    assert '"handler": "main.go"' in info.stdout

    logs = cli(server.url, "logs", name)
    assert logs.stdout.count("FC Invoke Start RequestId") == 3
    assert "greeting file" in logs.stdout

    invocations = cli(server.url, "invocations", name)
    assert invocations.returncode == 0 and "succeeded" in invocations.stdout

    instances = cli(server.url, "instances", name)
    assert instances.returncode == 0 and "c-" in instances.stdout

    r = cli(server.url, "rm", name)
    assert r.returncode == 0 and f"Deleted {name}" in r.stdout


def test_logs_of_one_request(server: Server, tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(e, c):\n    print('only me')\n")
    name = unique("cli")
    assert cli(server.url, "deploy", str(tmp_path), "--name", name).returncode == 0
    r = cli(server.url, "invoke", name)
    request_id = r.stderr.split("request ")[1].split(",")[0]
    logs = cli(server.url, "logs", name, "--request-id", request_id)
    assert f"FC Invoke Start RequestId: {request_id}\nonly me\n" in logs.stdout


def test_errors_are_one_line_and_exit_non_zero(server: Server, tmp_path: Path) -> None:
    r = cli(server.url, "invoke", "does-not-exist")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "Error: FunctionNotFound: function 'does-not-exist' does not exist"]

    (tmp_path / "index.py").write_text("def handler(e, c):\n    raise ValueError('nope')\n")
    name = unique("cli")
    cli(server.url, "deploy", str(tmp_path), "--name", name)
    r = cli(server.url, "invoke", name)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "Error: UnhandledInvocationError: ValueError: nope")
    assert "Traceback" not in r.stderr

    r = cli(server.url, "deploy", str(tmp_path / "missing"))
    assert r.returncode == 1 and "neither a folder nor a file" in r.stderr

    r = cli(server.url, "deploy", str(tmp_path), "--handler", "nodot")
    assert r.returncode == 1 and r.stderr.startswith("Error: InvalidArgument: handler 'nodot'")

    r = cli(f"http://127.0.0.1:{free_port()}", "ls")
    assert r.returncode == 1
    assert "cannot reach funclet" in r.stderr and "Traceback" not in r.stderr


def test_versions_and_a_canary_alias_from_the_cli(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    name = unique("cliver")
    for answer in ("one", "two"):
        (folder / "index.py").write_text(
            f"def handler(event, context):\n    return '{answer}'\n")
        assert cli(server.url, "deploy", str(folder), "--name", name).returncode == 0
        r = cli(server.url, "version", "publish", name, "--description", answer)
        assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"Version 2 of {name}."
    listed = cli(server.url, "version", "ls", name)
    assert listed.stdout.index("two") < listed.stdout.index("one")

    r = cli(server.url, "alias", "set", name, "prod", "1")
    assert r.stdout.strip() == f"Alias prod of {name} runs version 1.", r.stderr
    r = cli(server.url, "invoke", name, "--qualifier", "prod")
    assert r.stdout == "one\n" and "version 1" in r.stderr
    r = cli(server.url, "alias", "set", name, "prod", "1", "--weight", "2=0.1")
    assert r.stdout.strip() == f"Alias prod of {name} runs version 1 (version 2 10%).", r.stderr
    assert "2=0.1" in cli(server.url, "alias", "ls", name).stdout

    r = cli(server.url, "version", "rm", name, "2")
    assert r.returncode == 1 and r.stderr.startswith("Error: VersionInUse: version 2 of function")
    assert cli(server.url, "alias", "set", name, "prod", "1").returncode == 0
    assert cli(server.url, "version", "rm", name, "2").returncode == 0
    r = cli(server.url, "invoke", name, "--qualifier", "2")
    assert r.returncode == 1 and r.stderr.startswith("Error: VersionNotFound:")
    r = cli(server.url, "alias", "set", name, "prod", "1", "--weight", "nonsense")
    assert r.returncode != 0 and "--weight takes VERSION=SHARE" in r.stderr
    assert cli(server.url, "alias", "rm", name, "prod").returncode == 0


def test_a_layer_from_the_cli_and_deploy_with_it(server: Server, tmp_path: Path) -> None:
    layer = tmp_path / "shared" / "python"
    layer.mkdir(parents=True)
    (layer / "greeting.py").write_text("WORD = 'hello from a layer'\n")
    name = unique("clilayer")
    r = cli(server.url, "layer", "publish", name, str(tmp_path / "shared"),
            "--runtime", "python3.11")
    assert r.returncode == 0, r.stderr
    arn = r.stdout.strip().rpartition(": ")[2]
    assert arn.endswith(f":layers/{name}/versions/1")
    assert cli(server.url, "layer", "ls").returncode == 0  # (its table: all layers)
    assert "python3.11" in cli(server.url, "layer", "ls", name).stdout

    app = tmp_path / "app"
    app.mkdir()
    (app / "index.py").write_text(
        "import greeting\n\ndef handler(event, context):\n    return greeting.WORD\n")
    fn = unique("cliuses")
    r = cli(server.url, "deploy", str(app), "--name", fn, "--runtime", "python3.11",
            "--layer", arn)
    assert r.returncode == 0, r.stderr
    assert cli(server.url, "invoke", fn).stdout == "hello from a layer\n"
    r = cli(server.url, "deploy", str(app), "--name", unique("cli"), "--layer",
            arn.replace("/versions/1", "/versions/7"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert cli(server.url, "layer", "rm", name, "1").returncode == 0


def test_a_redeploy_changes_only_what_its_flags_name(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "main.py").write_text("def go(event, context):\n    return 'v1'\n")
    name = unique("cli")
    assert cli(server.url, "deploy", str(folder), "--name", name, "--handler", "main.go",
               "--timeout", "7").returncode == 0
    (folder / "main.py").write_text("def go(event, context):\n    return 'v2'\n")
    r = cli(server.url, "deploy", str(folder), "--name", name)  # new code, no flags
    assert r.returncode == 0 and f"Updated {name}" in r.stdout, r.stderr
    info = json.loads(cli(server.url, "info", name).stdout)
    assert (info["handler"], info["timeout"]) == ("main.go", 7)
    assert cli(server.url, "invoke", name).stdout == "v2\n"
    r = cli(server.url, "deploy", str(folder), "--name", name, "--memory", "256")
    info = json.loads(cli(server.url, "info", name).stdout)
    assert (info["handler"], info["timeout"], info["memorySize"]) == ("main.go", 7, 256)


def test_listings_are_whole_lines_off_a_terminal_or_json(server: Server,
                                                        tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(event, context):\n    return 'x'\n")
    name = unique("cli-listing-with-a-rather-long-name-that-a-terminal-would-wrap")
    assert cli(server.url, "deploy", str(tmp_path), "--name", name).returncode == 0
    invoked = cli(server.url, "invoke", name)
    request_id = invoked.stderr.split("request ", 1)[1].split(",", 1)[0]
    listed = cli(server.url, "invocations", name).stdout.splitlines()
    assert listed[0].split("\t")[:3] == ["request id", "started", "status"]
    assert listed[1].split("\t")[0] == request_id  # whole, copyable
    as_json = json.loads(cli(server.url, "ls", "--prefix", name, "-o", "json").stdout)
    assert [f["functionName"] for f in as_json] == [name]
    accepted = cli(server.url, "invoke", name, "--async", "--task-id",
                   "a-task-id-long-enough-to-wrap-at-eighty-columns-on-a-pipe-0123456789")
    assert accepted.stdout.count("\n") == 1 and "0123456789 (request" in accepted.stdout
    bad = cli(server.url, "ls", "-o", "yaml")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1


def test_help_version_and_completion(server: Server) -> None:
    help_text = subprocess.run([sys.executable, "-m", "funclet", "serve", "--help"],
                               capture_output=True, text=True, timeout=30).stdout
    assert "Address to listen on [default: 127.0.0.1]." in help_text
    r = subprocess.run([sys.executable, "-m", "funclet", "--version"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("funclet ")
    r = subprocess.run([sys.executable, "-m", "funclet", "--show-completion", "bash"],
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "SHELL": "/bin/bash"})
    assert r.returncode == 0 and "complete" in r.stdout


def test_trigger_config_mistakes_and_secrets(server: Server, tmp_path: Path) -> None:
    (tmp_path / "index.py").write_text("def handler(event, context):\n    return 'x'\n")
    name = unique("cli")
    assert cli(server.url, "deploy", str(tmp_path), "--name", name).returncode == 0
    r = cli(server.url, "trigger", "add", name, "t", "--type", "timer", "--config", "not json")
    assert r.returncode == 1 and r.stderr.startswith("Error: --config is not JSON")
    r = cli(server.url, "trigger", "add", name, "q", "--type", "redis",
            "--url", "redis://user:hunter2@127.0.0.1:6379/0", "--source", "orders")
    assert r.returncode == 0, r.stderr
    listed = cli(server.url, "trigger", "ls", name)
    assert "hunter2" not in listed.stdout and "user:***@127.0.0.1:6379" in listed.stdout
    # --update changes what its flags name; the timer keeps its payload.
    assert cli(server.url, "trigger", "add", name, "tick", "--type", "timer", "--cron",
               "@every 1h", "--payload", "keep me").returncode == 0
    r = cli(server.url, "trigger", "add", name, "tick", "--type", "timer", "--cron",
            "@every 2h", "--update")
    assert r.returncode == 0, r.stderr
    config = json.loads(json.loads(cli(server.url, "trigger", "info", name, "tick").stdout)
                        ["triggerConfig"])
    assert (config["cronExpression"], config["payload"]) == ("@every 2h", "keep me")


def test_dev_redeploys_on_save_and_prints_each_invocations_log(
        server: Server, tmp_path: Path) -> None:
    import httpx

    (tmp_path / "index.py").write_text(
        "def handler(event, context):\n    print('saw', event.decode())\n    return 'one'\n")
    name = unique("dev")
    proc = subprocess.Popen(
        [sys.executable, "-m", "funclet", "dev", str(tmp_path), "--name", name,
         "--endpoint", server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        lines = iter(proc.stderr.readline, "")
        assert any(line.startswith("Watching") for line in lines)
        url = f"{server.url}/2023-03-30/functions/{name}/invocations"
        assert httpx.post(url, content=b"first").text == "one"
        assert any("saw first" in line for line in iter(proc.stdout.readline, ""))
        (tmp_path / "index.py").write_text(
            "def handler(event, context):\n    return 'two'\n")
        saved = time.monotonic()
        while httpx.post(url).text != "two":
            assert time.monotonic() - saved < 10, "the save never went live"
            time.sleep(0.05)
        assert any(line.startswith("Live ") for line in lines)
    finally:
        proc.terminate()
        proc.wait(10)


def test_deploy_a_serverless_devs_s_yaml(server: Server, tmp_path: Path) -> None:
    """s.yaml's fc3 resources: vars and ${…} references, triggers, asyncInvokeConfig; a
    plan first (create / update / unchanged); unknown keys named in a warning."""
    suffix = unique("s")[2:]
    for folder, word in (("api", "hello"), ("worker", "working")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "index.py").write_text(
            "import os\n\ndef handler(event, context):\n"
            f"    return '{word} ' + os.environ.get('PEER', '')\n")
    (tmp_path / "s.yaml").write_text(f"""
edition: 3.0.0
name: demo
access: default
vars:
  region: cn-hangzhou
  memory: 256
resources:
  api:
    component: fc3
    props:
      region: ${{vars.region}}
      functionName: api-{suffix}
      runtime: python3.11
      handler: index.handler
      code: ./api
      memorySize: ${{vars.memory}}
      environmentVariables:
        PEER: ${{resources.worker.props.functionName}}
      triggers:
        - triggerName: nightly
          triggerType: timer
          triggerConfig: {{cronExpression: "0 0 4 * * *", payload: "go", enable: false}}
      asyncInvokeConfig:
        maxAsyncRetryAttempts: 1
      colour: blue
  worker:
    component: fc3
    props:
      functionName: worker-{suffix}
      runtime: python3.11
      handler: index.handler
      code: ./worker
""")
    r = cli(server.url, "deploy", "-f", str(tmp_path / "s.yaml"))
    assert r.returncode == 0, r.stderr
    assert f"create    api-{suffix} (api)" in r.stdout
    assert f"create    worker-{suffix} (worker)" in r.stdout
    assert "props.colour is not a function field funclet knows" in r.stderr
    # Off a terminal, the progress bar is a line per function and step.
    assert f"Packaging 1/2: api-{suffix}\n" in r.stderr
    assert f"Deploying 2/2: worker-{suffix}\n" in r.stderr
    assert cli(server.url, "invoke", f"api-{suffix}").stdout == f"hello worker-{suffix}\n"
    info = json.loads(cli(server.url, "info", f"api-{suffix}").stdout)
    assert info["memorySize"] == 256
    assert "nightly" in cli(server.url, "trigger", "ls", f"api-{suffix}").stdout
    config = cli(server.url, "async-config", f"api-{suffix}").stdout
    assert '"maxAsyncRetryAttempts": 1' in config

    again = cli(server.url, "deploy", "-f", str(tmp_path / "s.yaml"))
    assert f"unchanged api-{suffix}" in again.stdout, again.stdout
    assert f"unchanged worker-{suffix}" in again.stdout
    (tmp_path / "worker" / "index.py").write_text(
        "def handler(event, context):\n    return 'new'\n")
    changed = cli(server.url, "deploy", "-f", str(tmp_path / "s.yaml"))
    assert f"update    worker-{suffix}" in changed.stdout and f"unchanged api-{suffix}" in \
        changed.stdout
    assert cli(server.url, "invoke", f"worker-{suffix}").stdout == "new\n"

    (tmp_path / "bad.yaml").write_text("resources:\n  x:\n    component: fc3\n    props:\n"
                                       "      functionName: ${vars.nope}\n")
    bad = cli(server.url, "deploy", "-f", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 1 and "vars.nope" in bad.stderr and bad.stderr.count("\n") == 1


def test_deploy_an_aws_sam_template(server: Server, tmp_path: Path) -> None:
    """AWS::Serverless::Function (with Globals) runs unchanged under AWS's runtime client;
    Schedule, Api and SQS events (a broker URL as the queue) become funclet's triggers;
    what has no counterpart is named in a warning."""
    name = unique("sam")
    code = tmp_path / "hello_world"
    code.mkdir()
    (code / "app.py").write_text(
        "def lambda_handler(event, context):\n"
        "    return {'hi': event.get('who'), 'fn': context.function_name}\n")
    (tmp_path / "template.yaml").write_text(f"""
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 9
    MemorySize: 256
Resources:
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: {name}
      CodeUri: hello_world/
      Handler: app.lambda_handler
      Runtime: python3.11
      Architectures: [x86_64]
      Events:
        Nightly:
          Type: Schedule
          Properties: {{Schedule: "cron(0 4 * * ? *)", Enabled: false}}
        Web:
          Type: Api
          Properties: {{Path: /hello, Method: get}}
        Orders:
          Type: SQS
          Properties: {{Queue: "redis://127.0.0.1:6379/0#orders-{name}", BatchSize: 5}}
        Aws:
          Type: SQS
          Properties:
            Queue: !GetAtt MyQueue.Arn
  MyQueue:
    Type: AWS::SQS::Queue
""")
    r = subprocess.run(
        [sys.executable, "-m", "funclet", "deploy", "-f", str(tmp_path / "template.yaml"),
         "--endpoint", server.url], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"create    {name} (Hello)" in r.stdout
    for words in ("AWS::SQS::Queue is AWS's", "Architectures is AWS's", "SQS is AWS's",
                  "Path /hello is not routed"):
        assert words in r.stderr, words
    out = cli(server.url, "invoke", name, "--payload", '{"who": "sam"}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"hi": "sam", "fn": name}
    info = json.loads(cli(server.url, "info", name).stdout)
    assert (info["runtime"], info["timeout"], info["memorySize"]) == ("custom.lambda", 9, 256)
    triggers = json.loads(cli(server.url, "trigger", "ls", name, "-o", "json").stdout)
    kinds = {t["triggerName"]: (t["triggerType"], json.loads(t["triggerConfig"]))
             for t in triggers}
    assert kinds["Nightly"][0] == "timer" and kinds["Nightly"][1]["cronExpression"] == \
        "0 0 4 * * ?" and kinds["Nightly"][1]["enable"] is False
    assert kinds["Web"][0] == "http" and kinds["Web"][1]["methods"] == ["GET"]
    assert kinds["Orders"][0] == "redis" and kinds["Orders"][1]["stream"] == f"orders-{name}"
    assert "Aws" not in kinds


def test_a_sam_nodejs_function_runs_under_aws_node_runtime_client(
        server: Server, tmp_path: Path) -> None:
    """Runtime nodejs20.x: AWS's Node.js runtime client (aws-lambda-ric, built once and
    shared with the lambda-node example's deploy) beside the function's own modules."""
    name = unique("samnode")
    code = tmp_path / "src"
    code.mkdir()
    (code / "package.json").write_text('{"name": "x", "dependencies": {"ms": "2.1.3"}}')
    (code / "app.mjs").write_text(
        "import ms from 'ms';\n"
        "export const handler = async (event, context) =>\n"
        "  ({ hi: event.who, fn: context.functionName, ms: ms('2 minutes') });\n"
        "export const stream = awslambda.streamifyResponse(async (event, out) => {\n"
        "  out.setContentType('text/plain'); out.write('one;');\n"
        "  if (event.fail) throw new Error('failed mid-stream');\n"
        "  out.end('two'); });\n")
    (tmp_path / "template.yaml").write_text(f"""
Transform: AWS::Serverless-2016-10-31
Resources:
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: {name}
      CodeUri: src/
      Handler: app.handler
      Runtime: nodejs20.x
  Streams:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: {name}-stream
      CodeUri: src/
      Handler: app.stream
      Runtime: nodejs20.x
""")
    r = subprocess.run(
        [sys.executable, "-m", "funclet", "deploy", "-f", str(tmp_path / "template.yaml"),
         "--endpoint", server.url], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = cli(server.url, "invoke", name, "--payload", '{"who": "node"}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"hi": "node", "fn": name, "ms": 120000}
    # A streaming handler: the ric streams its response to the Runtime API (chunked, an
    # error in its trailers), and InvokeWithResponseStream passes it on.
    import boto3
    from botocore.config import Config

    aws = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x",
                       config=Config(retries={"max_attempts": 0}))
    events = list(aws.invoke_with_response_stream(FunctionName=f"{name}-stream")[
        "EventStream"])
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events
                    if "PayloadChunk" in e) == b"one;two"
    assert "ErrorCode" not in events[-1]["InvokeComplete"]
    failed = list(aws.invoke_with_response_stream(FunctionName=f"{name}-stream",
                                                  Payload=b'{"fail": true}')["EventStream"])
    assert failed[-1]["InvokeComplete"]["ErrorCode"] == "Unhandled"
    assert "failed mid-stream" in failed[-1]["InvokeComplete"]["ErrorDetails"]
    assert aws.invoke(FunctionName=f"{name}-stream")["Payload"].read() == b"one;two"
    (tmp_path / "template.yaml").write_text((tmp_path / "template.yaml").read_text()
                                            .replace("nodejs20.x", "java21"))
    refused = cli(server.url, "deploy", "-f", str(tmp_path / "template.yaml"))
    assert refused.returncode == 1 and "'java21'" in refused.stderr


def test_dev_with_a_manifest_redeploys_the_function_that_changed(
        server: Server, tmp_path: Path) -> None:
    import httpx

    suffix = unique("d")[2:]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "index.py").write_text(
            f"def handler(event, context):\n    return '{folder}1'\n")
    (tmp_path / "s.yaml").write_text("resources:\n" + "".join(
        f"  {f}:\n    component: fc3\n    props:\n      functionName: {f}-{suffix}\n"
        f"      runtime: python3.11\n      handler: index.handler\n      code: ./{f}\n"
        for f in ("a", "b")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "funclet", "dev", "-f", str(tmp_path / "s.yaml"),
         "--endpoint", server.url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stderr is not None
        assert any(line.startswith("Watching") for line in iter(proc.stderr.readline, ""))
        url = f"{server.url}/2023-03-30/functions/{{}}-{suffix}/invocations"
        b_before = httpx.get(f"{server.url}/2023-03-30/functions/b-{suffix}").json()
        (tmp_path / "a" / "index.py").write_text("def handler(event, context):\n"
                                                 "    return 'a2'\n")
        saved = time.monotonic()
        while httpx.post(url.format("a")).text != "a2":
            assert time.monotonic() - saved < 10, "the save never went live"
            time.sleep(0.05)
        assert httpx.post(url.format("b")).text == "b1"
        b_after = httpx.get(f"{server.url}/2023-03-30/functions/b-{suffix}").json()
        assert b_after["lastModifiedTime"] == b_before["lastModifiedTime"]  # untouched
    finally:
        proc.terminate()
        proc.wait(10)
