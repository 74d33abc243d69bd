"""FC 3.0's account-wide calls: DescribeRegions and resource tags (``/tags-v2``)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funclet.api.functions import PREFIX, decode_token, encode_token, platform_of
from funclet.api.responses import int_param, json_body, json_response, new_request_id
from funclet.errors import InvalidArgument
from funclet.models import parse_tags
from funclet.platform import Platform

_RESOURCE_TYPES = {"function", "aliyun::fc::function"}  # (either case)



async def describe_regions(request: Request) -> Response:
    """The one region this funclet is (``--region``)."""
    region = platform_of(request).settings.region
    return json_response({"Regions": {"Region": [{"RegionId": region, "LocalName": region}]}})


def _resource_type(raw: Any) -> str:
    if not isinstance(raw, str) or raw.lower() not in _RESOURCE_TYPES:
        raise InvalidArgument("ResourceType must be 'function' (the resources funclet tags)")
    return "function"


def _json_list(raw: Any, field: str) -> list[Any]:
    """A list the SDK sends in a query parameter as JSON (``["a","b"]``), or one value."""
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str) or not raw:
        raise InvalidArgument(f"{field} is required")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [raw]
    return value if isinstance(value, list) else [raw]


async def _functions(platform: Platform, ids: list[Any]) -> list[str]:
    """Function names from resource ids (a name, or a function's ARN); each must exist."""
    names = []
    for raw in ids:
        if not isinstance(raw, str):
            raise InvalidArgument("ResourceId must be a list of function names or ARNs")
        name = raw.rpartition(":functions/")[2] if ":functions/" in raw else raw
        await platform.functions.get(name)
        names.append(name)
    if not names or len(names) > 50:
        raise InvalidArgument("ResourceId: 1 to 50 functions")
    return names


async def tag_resources(request: Request) -> Response:
    platform = platform_of(request)
    body = await json_body(request)
    kind = _resource_type(body.get("ResourceType"))
    names = await _functions(platform, _json_list(body.get("ResourceId"), "ResourceId"))
    tags = parse_tags(body.get("Tag"), "Tag")
    if not tags:
        raise InvalidArgument("Tag: at least one tag")
    for name in names:
        if len({**(await platform.store.tags_of(kind, [name])).get(name, {}), **tags}) > 20:
            raise InvalidArgument(f"function '{name}' would have more than 20 tags")
    for name in names:
        await platform.store.set_tags(kind, name, tags, [])
    return Response(status_code=204, headers={"x-fc-request-id": new_request_id()})


async def untag_resources(request: Request) -> Response:
    platform = platform_of(request)
    q = request.query_params
    kind = _resource_type(q.get("ResourceType"))
    names = await _functions(platform, _json_list(q.get("ResourceId"), "ResourceId"))
    every = q.get("All", "").lower() == "true"
    keys = None if every else _json_list(q.get("TagKey"), "TagKey (or All=true)")
    if keys is not None and not all(isinstance(k, str) for k in keys):
        raise InvalidArgument("TagKey must be a list of tag keys")
    for name in names:
        await platform.store.set_tags(kind, name, {}, keys)
    return Response(status_code=204, headers={"x-fc-request-id": new_request_id()})


async def list_tag_resources(request: Request) -> Response:
    """Each (function, tag) pair, by function then key; ``ResourceId`` and ``Tag``
    narrow it (a Tag without Value matches any value)."""
    platform = platform_of(request)
    q = request.query_params
    kind = _resource_type(q.get("ResourceType") or "function")
    limit = int_param(request, "Limit", 20, 1, 1000)
    names = (await _functions(platform, _json_list(q.get("ResourceId"), "ResourceId"))
             if q.get("ResourceId") else None)
    wanted = _json_list(q.get("Tag"), "Tag") if q.get("Tag") else []
    if not all(isinstance(t, dict) and isinstance(t.get("Key"), str) for t in wanted):
        raise InvalidArgument('Tag must be a list of {"Key", "Value"} objects')
    by_function = await platform.store.tags_of(kind, names)
    if wanted:
        by_function = {n: t for n, t in by_function.items() if all(
            w["Key"] in t and w.get("Value") in (None, t[w["Key"]]) for w in wanted)}
    rows = [(n, k, v) for n, tags in by_function.items() for k, v in tags.items()]
    token = q.get("NextToken")
    if token:
        after = decode_token(token)
        rows = [r for r in rows if f"{r[0]}\0{r[1]}" > after]
    page = rows[:limit]
    out: dict[str, Any] = {"TagResources": [
        {"ResourceId": platform.function_arn(n), "ResourceType": "function", "TagKey": k,
         "TagValue": v} for n, k, v in page], "RequestId": new_request_id()}
    if len(rows) > limit:
        out["NextToken"] = encode_token(f"{page[-1][0]}\0{page[-1][1]}")
    return json_response(out)


async def change_resource_group(request: Request) -> Response:
    """ChangeResourceGroup of a function (``ResourceType`` function, its name or ARN)."""
    platform = platform_of(request)
    body = await json_body(request)
    _resource_type(body.get("ResourceType") or "function")
    group = body.get("NewResourceGroupId")
    if not isinstance(group, str) or not 1 <= len(group) <= 128:
        raise InvalidArgument("NewResourceGroupId is required: a resource group's id")
    [name] = await _functions(platform, [body.get("ResourceId")])
    old = await platform.functions.change_resource_group(name, group)
    return json_response({"ResourceId": body["ResourceId"], "OldResourceGroupId": old,
                          "NewResourceGroupId": group})


routes = [
    Route(f"{PREFIX}/resource-groups", change_resource_group, methods=["PUT"]),
    Route(f"{PREFIX}/regions", describe_regions, methods=["GET"]),
    Route(f"{PREFIX}/tags-v2", tag_resources, methods=["POST"]),
    Route(f"{PREFIX}/tags-v2", untag_resources, methods=["DELETE"]),
    Route(f"{PREFIX}/tags-v2", list_tag_resources, methods=["GET"]),
]
