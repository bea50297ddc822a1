"""Proxy mode: clients of generation backends (routes from `policies/routes.yaml`) and the flow
that wraps them in the gateway's input and output decisions.

    routes.py    the routes file schema and loader (file:line errors)
    manager.py   keep-last-good reload of the routes file
    template.py  request templates and response paths for `http-json` upstreams
    clients.py   openai-images | http-json | automatic1111, with the retry rule
    state.py     per-gateway state in gw.extras (`attach_proxy`)
    proxy.py     input decision → upstream → output decisions → release
"""

from gateway.upstream.clients import UpstreamCall, UpstreamFailure, call_upstream
from gateway.upstream.manager import RouteManager
from gateway.upstream.proxy import ProxyDenied, ProxyOutcome, ProxyRequest, ProxyService, UpstreamFailed
from gateway.upstream.routes import Route, RoutesError, RoutesFile, RouteTable, load_routes
from gateway.upstream.state import ProxyState, attach_proxy

__all__ = [
    "ProxyDenied", "ProxyOutcome", "ProxyRequest", "ProxyService", "ProxyState", "Route", "RouteManager",
    "RouteTable", "RoutesError", "RoutesFile", "UpstreamCall", "UpstreamFailed", "UpstreamFailure",
    "attach_proxy", "call_upstream", "load_routes",
]
