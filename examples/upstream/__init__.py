"""A reference upstream model server for tests and the demo (OpenAI images API, AUTOMATIC1111
txt2img/img2img, a generic JSON API) with deterministic pictures. Run it with
`python -m examples.upstream --port 9090`."""

from examples.upstream.app import Call, UpstreamState, create_upstream_app
from examples.upstream.server import ServerThread, free_port

__all__ = ["Call", "ServerThread", "UpstreamState", "create_upstream_app", "free_port"]
