"""Why: an existing OpenAI images client needs one change to go through consentgate — its
`base_url`. This example points the official `openai` package at the gateway, asks the `demo`
route (the reference upstream) for an image, and saves the marked, C2PA-signed PNG it gets back.
A refusal arrives as an OpenAI error whose body carries the decision id.

    python -m examples.upstream --port 9090 &          # the model (scripts/run.sh starts it)
    consentgate serve &                                # the gateway on 127.0.0.1:8080
    CONSENTGATE_API_KEY=<generator key> python -m examples.openai_client --prompt "a lighthouse"
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import openai


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate an image through consentgate with the openai package"
    )
    parser.add_argument("--url", default=os.environ.get("CONSENTGATE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("CONSENTGATE_API_KEY"))
    parser.add_argument("--model", default="demo", help="the gateway route")
    parser.add_argument("--prompt", default="a lighthouse at dusk, oil painting")
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--out", type=Path, default=Path("consentgate-image.png"))
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("pass --api-key or set CONSENTGATE_API_KEY (a generator key)")

    client = openai.OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.api_key, max_retries=0)
    try:
        result = client.images.generate(
            model=args.model, prompt=args.prompt, size=args.size, response_format="b64_json"
        )
    except openai.PermissionDeniedError as denied:
        body = denied.body if isinstance(denied.body, dict) else {}
        print(
            f"refused ({denied.code}) at the {body.get('stage')} check; decision {body.get('decision_id')}",
            file=sys.stderr,
        )
        return 3
    except openai.APIStatusError as failed:
        print(f"gateway answered {failed.status_code}: {failed.message}", file=sys.stderr)
        return 2
    if not result.data or not result.data[0].b64_json:
        print("no image in the answer", file=sys.stderr)
        return 2
    args.out.write_bytes(base64.b64decode(result.data[0].b64_json))
    info = (result.model_extra or {}).get("consentgate", {})
    decisions = ", ".join(i["decision_id"] for i in info.get("images", []))
    print(f"saved {args.out} (request {info.get('request_id')}, decision {decisions})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
