"""Custom domains through the official FC 3.0 SDK: a host name's requests go to
functions by path (exact first, then the longest wildcard), with a qualifier, methods
and path rewrites, as FC routes them; no HTTP trigger is needed."""

from __future__ import annotations

import httpx
import pytest
from alibabacloud_fc20230330 import models as fc
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Server
from tests.helpers import b64, make_zip, unique

ECHO = """
import json

def handler(event, context):
    e = json.loads(event)
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"who": "%s", "path": e["rawPath"],
                                "method": e["requestContext"]["http"]["method"]})}
"""


@pytest.fixture(scope="module")
def sdk(server: Server) -> Client:
    return Client(openapi.Config(
        access_key_id="test-ak", access_key_secret="test-sk",
        endpoint=f"127.0.0.1:{server.port}", protocol="http", region_id="local",
    ))


def _deploy(sdk: Client, who: str) -> str:
    name = unique("dom")
    sdk.create_function(fc.CreateFunctionRequest(body=fc.CreateFunctionInput(
        function_name=name, runtime="python3.11", handler="index.handler",
        code=fc.InputCodeLocation(zip_file=b64(make_zip({"index.py": ECHO % who}))))))
    return name


def _get(server: Server, host: str, path: str, method: str = "GET") -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", headers={"host": host}, timeout=30)


def test_a_custom_domain_routes_paths_to_functions(sdk: Client, server: Server) -> None:
    api, login, site = _deploy(sdk, "api"), _deploy(sdk, "login"), _deploy(sdk, "site")
    sdk.publish_function_version(api, fc.PublishFunctionVersionRequest(
        body=fc.PublishVersionInput()))
    sdk.create_alias(api, fc.CreateAliasRequest(body=fc.CreateAliasInput(
        alias_name="prod", version_id="1")))
    host = f"{unique('app')}.example.test"
    routes = fc.RouteConfig(routes=[
        fc.PathConfig(path="/api/*", function_name=api, qualifier="prod"),
        fc.PathConfig(path="/login", function_name=login, methods=["POST"]),
        fc.PathConfig(path="/*", function_name=site, rewrite_config=fc.RewriteConfig(
            wildcard_rules=[fc.WildcardRule(match="/old/*", replacement="/new/$1")],
            equal_rules=[fc.EqualRule(match="/", replacement="/index.html")])),
    ])
    created = sdk.create_custom_domain(fc.CreateCustomDomainRequest(
        body=fc.CreateCustomDomainInput(domain_name=host, protocol="HTTP",
                                        route_config=routes))).body
    assert created.domain_name == host and len(created.route_config.routes) == 3

    assert _get(server, host, "/api/orders/7").json() == {
        "who": "api", "path": "/api/orders/7", "method": "GET"}
    assert _get(server, f"{host}:8080", "/login", "POST").json()["who"] == "login"
    assert _get(server, host, "/login").status_code == 405  # GET: not in its methods
    assert _get(server, host, "/old/page").json() == {"who": "site", "path": "/new/page",
                                                      "method": "GET"}
    assert _get(server, host, "/").json()["path"] == "/index.html"
    assert _get(server, host.upper(), "/x").json()["who"] == "site"  # host names: any case

    sdk.update_custom_domain(host, fc.UpdateCustomDomainRequest(
        body=fc.UpdateCustomDomainInput(route_config=fc.RouteConfig(routes=[
            fc.PathConfig(path="/only", function_name=site)]))))
    assert _get(server, host, "/only").json()["who"] == "site"
    missing = _get(server, host, "/api/orders/7")
    assert missing.status_code == 404 and missing.json()["Code"] == "NotFound"

    got = sdk.get_custom_domain(host).body
    assert [r.path for r in got.route_config.routes] == ["/only"]
    listed = sdk.list_custom_domains(fc.ListCustomDomainsRequest(prefix=host)).body
    assert [d.domain_name for d in listed.custom_domains] == [host]
    sdk.delete_custom_domain(host)
    with pytest.raises(ClientException) as info:
        sdk.get_custom_domain(host)
    assert (info.value.status_code, info.value.code) == (404, "DomainNameNotFound")
    assert _get(server, host, "/only").status_code == 404  # not a domain any more


def test_bad_custom_domains_are_refused(sdk: Client) -> None:
    name = _deploy(sdk, "x")
    host = f"{unique('bad')}.example.test"
    sdk.create_custom_domain(fc.CreateCustomDomainRequest(body=fc.CreateCustomDomainInput(
        domain_name=host, route_config=fc.RouteConfig(routes=[
            fc.PathConfig(path="/*", function_name=name)]))))
    with pytest.raises(ClientException) as info:
        sdk.create_custom_domain(fc.CreateCustomDomainRequest(body=fc.CreateCustomDomainInput(
            domain_name=host)))
    assert info.value.code == "DomainNameAlreadyExists"
    for body in (
        fc.CreateCustomDomainInput(domain_name="not a host"),
        fc.CreateCustomDomainInput(domain_name="127.0.0.1"),  # the API's own address
        fc.CreateCustomDomainInput(domain_name="localhost"),
        fc.CreateCustomDomainInput(domain_name=f"a{host}", route_config=fc.RouteConfig(
            routes=[fc.PathConfig(path="no-slash", function_name=name)])),
        fc.CreateCustomDomainInput(domain_name=f"b{host}", route_config=fc.RouteConfig(
            routes=[fc.PathConfig(path="/", function_name=name, qualifier="a b")])),
        fc.CreateCustomDomainInput(domain_name=f"c{host}", auth_config=fc.AuthConfig(
            auth_type="jwt")),
    ):
        with pytest.raises(ClientException) as info:
            sdk.create_custom_domain(fc.CreateCustomDomainRequest(body=body))
        assert info.value.status_code == 400, body
