"""Why: the parsers that take hostile bytes must fail only in the ways they document — a 4xx-mapped
error for media, `VideoError` for video, `PolicyError` / `ValidationError` for policies — and never
crash, hang or raise anything else (which the API would turn into a 500). Each target here is one
call on one input; `fuzz/runner.py` drives it under atheris (coverage-guided) or as a plain bounded
random-input loop with a fixed seed, and `tests/hardening/test_fuzz_targets.py` runs every target
for a few hundred iterations in the default test run.

Targets (each may raise only the documented types):

- media: gateway.media.sniff and decode_image; may raise gateway.errors.BadInput (with its
  subclasses TooLarge and UnsupportedMedia).
- video: gateway.video.intake.sniff_video (never raises) and probe_video; may raise VideoError.
- policy: gateway.policy.loader.parse_policy on YAML bytes; may raise PolicyError.
- policy-model: gateway.policy.schema.Policy.model_validate on a tree derived from the bytes (a
  repository policy with edits the bytes choose); may raise pydantic.ValidationError.

Seeds are built at run time from images that ship inside packages and from the repository's own
policy files; nothing is downloaded.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import io
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    name: str
    one: Callable[[bytes], None]
    documented: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    dictionary: tuple[bytes, ...] = ()
    max_len: int = 1 << 20
    notes: dict[str, str] = field(default_factory=dict)


def outcome(target: Target, data: bytes) -> BaseException | None:
    """Run one input; return the exception that escaped *outside* the documented types, else None."""
    return classify(target, data)[1]


def classify(target: Target, data: bytes) -> tuple[str, BaseException | None]:
    """("ok" | "documented:<type>" | "escaped:<type>", the escaped exception or None)."""
    try:
        target.one(data)
    except target.documented as exc:
        return f"documented:{type(exc).__name__}", None
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return f"escaped:{type(exc).__name__}", exc
    return "ok", None


# -- mutation ---------------------------------------------------------------------------------------

_INTERESTING_32 = (0, 1, 7, 8, 16, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(
    data: bytes, rng: random.Random, dictionary: tuple[bytes, ...] = (), max_len: int = 1 << 20
) -> bytes:
    """A few random edits in the style of libFuzzer's default mutators (deterministic for `rng`)."""
    d = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not d:
            d += rng.randbytes(rng.randint(1, 32))
            continue
        p = rng.randrange(len(d))
        op = rng.randrange(9)
        if op == 0:
            d[p] ^= 1 << rng.randrange(8)
        elif op == 1:
            d[p] = rng.randrange(256)
        elif op == 2:
            del d[p : p + rng.randint(1, 256)]
        elif op == 3:
            d[p:p] = rng.randbytes(rng.randint(1, 32))
        elif op == 4:
            value = rng.choice(_INTERESTING_32)
            d[p : p + 4] = value.to_bytes(4, rng.choice(("big", "little")))
        elif op == 5:
            q = rng.randrange(len(d))
            d[p:p] = d[q : q + rng.randint(1, 512)]
        elif op == 6:
            del d[p:]
        elif op == 7 and dictionary:
            token = rng.choice(dictionary)
            if rng.random() < 0.5:
                d[p:p] = token
            else:
                d[p : p + len(token)] = token
        else:
            d[p : p + 2] = rng.randbytes(2)
    return bytes(d[:max_len])


# -- media ------------------------------------------------------------------------------------------


def _media_limits() -> Any:
    from gateway.media import MediaLimits

    return MediaLimits(max_bytes=4_000_000, max_pixels=4_000_000, working_max_side=256)


def media_one(data: bytes) -> None:
    from gateway.media import decode_image, sniff

    sniff(data)
    decode_image(data, _media_limits())


@cache
def media_seeds() -> list[bytes]:
    import numpy as np
    import skimage.data
    from PIL import Image

    small = np.ascontiguousarray(skimage.data.coffee()[::10, ::10])
    face = np.ascontiguousarray(skimage.data.astronaut()[::8, ::8])
    out: list[bytes] = []
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    exif[0x010E] = "consentgate fuzz seed"
    for arr in (small, face):
        for fmt, kw in (
            ("PNG", {}),
            ("JPEG", {"quality": 80}),
            ("WEBP", {"quality": 70}),
            ("WEBP", {"lossless": True}),
        ):
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, fmt, exif=exif.tobytes(), **kw)
            out.append(buf.getvalue())
    for mode, kw in (("RGBA", {}), ("LA", {}), ("P", {"transparency": 3}), ("I;16", {}), ("1", {})):
        buf = io.BytesIO()
        Image.fromarray(small).convert(mode).save(buf, "PNG", **kw)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, "JPEG", progressive=True, quality=60)
    out.append(buf.getvalue())
    return out


MEDIA_DICTIONARY = (
    b"\x89PNG\r\n\x1a\n",
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"eXIf",
    b"zTXt",
    b"iTXt",
    b"iCCP",
    b"acTL",
    b"Exif\x00\x00",
    b"MM\x00*",
    b"II*\x00",
    b"\xff\xd8\xff",
    b"\xff\xe1",
    b"\xff\xc0",
    b"\xff\xc2",
    b"\xff\xda",
    b"\xff\xd9",
    b"RIFF",
    b"WEBP",
    b"VP8 ",
    b"VP8L",
    b"VP8X",
    b"ANIM",
    b"ANMF",
    b"EXIF",
    b"ALPH",
)


# -- video ------------------------------------------------------------------------------------------


@cache
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="consentgate-fuzz-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def video_one(data: bytes) -> None:
    from gateway.video.intake import VideoLimits, probe_video, sniff_video

    sniff_video(data[:4096])
    sniff_video(data)
    path = _scratch() / f"input-{os.getpid()}.bin"
    path.write_bytes(data)
    probe_video(
        path,
        VideoLimits(max_bytes=8_000_000, max_seconds=30, max_width=1920, max_height=1080, max_frames=2000),
    )


@cache
def video_seeds() -> list[bytes]:
    from gateway.video.testing import make_test_video

    work = _scratch()
    out = []
    for name, kw in (
        ("seed.mp4", {}),
        ("seed.webm", {"container": "webm"}),
        ("seed.mov", {"container": "mov", "audio_tone_hz": None}),
    ):
        path = make_test_video(
            work / name, [("coffee", 0.0, 0.4, None), ("gray", 0.4, 0.6, None)], fps=10, size=(64, 48), **kw
        )
        out.append(path.read_bytes())
    return out


VIDEO_DICTIONARY = (
    b"ftyp",
    b"isom",
    b"mp42",
    b"qt  ",
    b"moov",
    b"mvhd",
    b"trak",
    b"tkhd",
    b"mdia",
    b"mdhd",
    b"minf",
    b"stbl",
    b"stsd",
    b"stts",
    b"stsc",
    b"stsz",
    b"stco",
    b"co64",
    b"ctts",
    b"mdat",
    b"free",
    b"avc1",
    b"avcC",
    b"hvc1",
    b"\x1a\x45\xdf\xa3",
    b"\x42\x82\x84webm",
    b"\x18\x53\x80\x67",
    b"\x00\x00\x00\x01",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
)


# -- policy -----------------------------------------------------------------------------------------


def policy_one(data: bytes) -> None:
    from gateway.policy.loader import parse_policy

    parse_policy(Path("fuzz.yaml"), data)


@cache
def policy_seeds() -> list[bytes]:
    files = sorted((REPO / "policies").rglob("*.yaml"))
    out = [p.read_bytes() for p in files if "tests" not in p.relative_to(REPO / "policies").parts]
    out.append(b"name: minimal\nuses: {txt2img: {input: {}}}\n")
    return out


POLICY_DICTIONARY = (
    b"name:",
    b"uses:",
    b"models:",
    b"adapter:",
    b"consent:",
    b"labels:",
    b"deny:",
    b"review:",
    b"nsfw:",
    b"faces:",
    b"prompt:",
    b"regexes:",
    b"terms:",
    b"&a ",
    b"*a",
    b"<<: ",
    b"!!str ",
    b"!!binary ",
    b"!!python/object ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b": ",
    b"null",
    b"~",
    b"'",
    b'"',
    b"\n  ",
    b"\t",
    b"---\n",
    b"...\n",
    b"%YAML 1.1\n",
    b"? ",
    b"|\n",
    b">\n",
    b"#",
)


# -- policy model (a tree, not YAML) ---------------------------------------------------------------

_POLICY_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    -(2**63),
    0.5,
    -0.0,
    1.5,
    1e308,
    float("inf"),
    float("nan"),
    "",
    "deny",
    "allow",
    "review",
    "redact",
    "fake",
    "dlib",
    "pdq",
    "opennsfw",
    "nudify",
    "x" * 300,
    "\u0000",
    "é",
    "(",
    "[a-",
    "a{2,1}",
    "(?P<x>a)(?P=y)",
    "\\",
    "*",
    "a**",
    [],
    {},
    [None],
    {"": None},
    ["a", 1],
    {"adapter": 5},
    {"deny": 2},
    {"deny": 0.2, "review": 0.9},
    {"model": "nope", "labels": {}},
    {"unmatched": "maybe"},
)


def _policy_tree(data: bytes) -> Any:
    """A deterministic function of `data`: a repository policy with edits chosen by `data`'s bytes."""
    rng = random.Random(hashlib.sha256(data).digest())
    tree = copy.deepcopy(_policy_trees()[rng.randrange(len(_policy_trees()))])
    for _ in range(1 + len(data) % 6):
        paths = list(_paths(tree))
        path = paths[rng.randrange(len(paths))]
        parent, key = _walk(tree, path[:-1]), path[-1] if path else None
        op = rng.randrange(4)
        if key is None:
            tree = rng.choice(_POLICY_VALUES) if op == 0 else tree
        elif op == 0:
            parent[key] = copy.deepcopy(rng.choice(_POLICY_VALUES))
        elif op == 1 and isinstance(parent, dict):
            del parent[key]
        elif op == 2 and isinstance(parent, dict):
            parent[rng.choice(("extra", "uses", "x" * 5, ""))] = copy.deepcopy(rng.choice(_POLICY_VALUES))
        else:
            parent[key] = [copy.deepcopy(parent[key])] if rng.random() < 0.5 else {"wrapped": parent[key]}
    return tree


@cache
def _policy_trees() -> list[Any]:
    import yaml

    return [yaml.safe_load(raw) for raw in policy_seeds()]


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Any:
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, (*prefix, i))


def _walk(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def policy_model_one(data: bytes) -> None:
    from gateway.policy.schema import Policy

    Policy.model_validate(_policy_tree(data))


def _documented_media() -> tuple[type[BaseException], ...]:
    from gateway.errors import BadInput

    return (BadInput,)


def _documented_video() -> tuple[type[BaseException], ...]:
    from gateway.video.intake import VideoError

    return (VideoError,)


def _documented_policy() -> tuple[type[BaseException], ...]:
    from gateway.policy.loader import PolicyError

    return (PolicyError,)


def _documented_policy_model() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    return (ValidationError,)


def targets() -> dict[str, Target]:
    return {
        "media": Target("media", media_one, _documented_media(), media_seeds, MEDIA_DICTIONARY, 2_000_000),
        "video": Target("video", video_one, _documented_video(), video_seeds, VIDEO_DICTIONARY, 200_000),
        "policy": Target("policy", policy_one, _documented_policy(), policy_seeds, POLICY_DICTIONARY, 64_000),
        "policy-model": Target(
            "policy-model", policy_model_one, _documented_policy_model(), policy_seeds, (), 4096
        ),
    }
