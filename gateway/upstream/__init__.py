"""Proxy mode's clients of generation backends (routes from `policies/routes.yaml`). The flow that
wraps them in the gateway's input and output decisions is `gateway.pipeline.proxy`.

    routes.py    the routes file schema and loader (file:line errors)
    manager.py   keep-last-good reload of the routes file
    template.py  request templates and response paths for `http-json` upstreams
    clients.py   openai-images | http-json | automatic1111, with the retry rule
    errors.py    UpstreamFailure, RoutesError, TemplateError
    state.py     per-gateway proxy resources: routes, blobs, rate limiter, route slots, HTTP client
"""

from gateway.upstream.clients import UpstreamCall, call_upstream
from gateway.upstream.errors import RoutesError, TemplateError, UpstreamFailure
from gateway.upstream.manager import RouteManager
from gateway.upstream.routes import Route, RoutesFile, RouteTable, load_routes
from gateway.upstream.state import ProxyState, open_proxy_state

__all__ = [
    "ProxyState", "Route", "RouteManager", "RouteTable", "RoutesError", "RoutesFile", "TemplateError", "UpstreamCall",
    "UpstreamFailure", "call_upstream", "load_routes", "open_proxy_state",
]
