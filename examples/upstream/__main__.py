"""`python -m examples.upstream --port 9090`: serve the reference upstream on loopback."""

from __future__ import annotations

import argparse

import uvicorn

from examples.upstream.app import create_upstream_app


def main() -> None:
    parser = argparse.ArgumentParser(description="consentgate reference upstream (deterministic images)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    args = parser.parse_args()
    uvicorn.run(create_upstream_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
