from __future__ import annotations

import base64
import socket

import pytest

from funclet.errors import InvalidArgument
from funclet.logs import MAX_LINE, clip_lines, tail
from funclet.models import Hook, parse_config
from funclet.runtimes import protocol

BASE = {"functionName": "fn", "runtime": "python3.11", "handler": "index.handler"}


def test_parse_config_applies_fc_defaults_and_hooks() -> None:
    cfg = parse_config({**BASE, "instanceLifecycleConfig": {
        "initializer": {"handler": "a.init"}, "preStop": {"handler": "a.stop", "timeout": 9}}})
    assert (cfg.timeout, cfg.memory_size, cfg.instance_concurrency) == (60, 512, 1)
    assert cfg.initializer == Hook("a.init", 3)
    assert cfg.pre_stop == Hook("a.stop", 9)
    assert parse_config(cfg.to_fc()) == cfg


def test_update_merges_onto_the_current_config() -> None:
    cfg = parse_config({**BASE, "timeout": 10})
    updated = parse_config({"memorySize": 1024}, base=cfg)
    assert (updated.timeout, updated.memory_size, updated.name) == (10, 1024, "fn")


@pytest.mark.parametrize(("change", "field"), [
    ({"handler": "index"}, "handler"),
    ({"handler": "index.handler()"}, "handler"),
    ({"handler": "a..b"}, "handler"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 1.5}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"memorySize": 64}, "memorySize"),
    ({"memorySize": 130}, "memorySize"),
    ({"instanceConcurrency": 0}, "instanceConcurrency"),
    ({"functionName": "-x"}, "functionName"),
    ({"functionName": "a" * 129}, "functionName"),
    ({"environmentVariables": {"K": 1}}, "environmentVariables"),
    ({"environmentVariables": {"K": "v" * 5000}}, "environmentVariables"),
    ({"instanceLifecycleConfig": {"initializer": "x"}}, "initializer"),
    ({"instanceLifecycleConfig": {"preStop": {"handler": "a.b", "timeout": 91}}}, "timeout"),
    ({"description": "d" * 257}, "description"),
])
def test_parse_config_names_the_bad_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        parse_config({**BASE, **change})


def test_clip_lines_cuts_only_long_lines() -> None:
    short = "a\nb\n"
    assert clip_lines(short) == short
    long = "x" * (MAX_LINE + 10)
    clipped = clip_lines(f"start\n{long}\nend\n").split("\n")
    assert clipped[0] == "start" and clipped[2] == "end"
    assert clipped[1].startswith("x" * MAX_LINE) and clipped[1].endswith("exceeded 32 KB]")


def test_tail_is_the_last_4_kb_in_base64() -> None:
    log = "".join(f"line {i}\n" for i in range(2000))
    raw = base64.b64decode(tail(log))
    assert len(raw) == 4096 and log.encode().endswith(raw)


def test_protocol_frames_round_trip_over_a_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(protocol.encode({"type": "invoke", "id": "r1"}, b"\0\xffbody"))
        a.sendall(protocol.encode({"type": "pre_stop"}))
        assert protocol.read_frame(b) == ({"type": "invoke", "id": "r1"}, b"\0\xffbody")
        assert protocol.read_frame(b) == ({"type": "pre_stop"}, b"")
        a.close()
        assert protocol.read_frame(b) is None
