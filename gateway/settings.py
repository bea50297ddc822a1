"""Why: every knob of a gateway process in one typed object, read from the environment once and
passed explicitly (to `create_app(settings)` and the CLI) — never a module-level global."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    policies_dir: Path = Path("./policies")
    database_url: str | None = None
    keystore_url: str | None = None
    operator_tenant: str = "operator"
    # Tenants declared before their keys exist (CONSENTGATE_TENANTS, comma-separated): grants may name them.
    tenants: tuple[str, ...] = ()
    # Web console sessions (gateway/sessions.py): idle and absolute expiry, in seconds.
    console_session_idle_s: float = 1800.0
    console_session_max_s: float = 43200.0
    audit_origin: str = "consentgate.local/audit"
    audit_checkpoint_every: int = 256
    audit_checkpoint_interval_ms: int = 1000
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 4096 * 4096  # the largest image analysed at full resolution in the time budget
    max_media_parts: int = 16
    working_max_side: int = 1024
    model_threads: int = 2
    # an image check splits across cores unless this many checks are in flight, itself included
    # (None: no limit; 0 or 1: never; gateway/pipeline/parallel.py)
    split_below: int | None = None
    model_timeout_s: float = 10.0
    check_deadline_s: float = 30.0  # one check, all models and decide() together; over it: deny
    input_decision_max_age_s: float = 3600.0  # how long an input decision backs its outputs (#15.2)
    policy_reload_interval_s: float = 1.0
    policy_trust_key: Path | None = None
    redis_url: str | None = None
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    cors_origins: tuple[str, ...] = ()
    # Where the models run: "inprocess" (every gateway process loads them; the default) or "ray"
    # (the families in `ray_families` are called on Ray Serve at `ray_address`, the Serve proxy's
    # http(s) URL; docs/deploy.md "Model workers on Ray Serve").
    model_backend: str = "inprocess"
    ray_address: str | None = None
    ray_families: tuple[str, ...] = ("nsfw", "face", "text")
    log_format: str = "text"  # "json": one JSON object per log line (gateway.requestlog)
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model_backend not in ("inprocess", "ray"):
            raise ValueError(f"CONSENTGATE_MODEL_BACKEND must be inprocess or ray, not {self.model_backend!r}")
        if self.model_backend == "ray" and not self.ray_address:
            raise ValueError("CONSENTGATE_MODEL_BACKEND=ray needs CONSENTGATE_RAY_ADDRESS (the Ray Serve URL)")
        if self.ray_address and not self.ray_address.startswith(("http://", "https://")):
            raise ValueError(f"CONSENTGATE_RAY_ADDRESS must be the Ray Serve proxy's http(s) URL, "
                             f"not {self.ray_address!r}")
        if self.split_below is not None and self.split_below < 0:
            raise ValueError(f"CONSENTGATE_SPLIT_BELOW must be >= 0, not {self.split_below}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"CONSENTGATE_LOG_FORMAT must be text or json, not {self.log_format!r}")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'consentgate.db').resolve()}"

    @property
    def resolved_keystore_url(self) -> str:
        if self.keystore_url:
            return self.keystore_url
        return f"sqlite:///{(self.data_dir / 'keys.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        trust = env.get("CONSENTGATE_POLICY_TRUST_KEY")
        cors = env.get("CONSENTGATE_CORS_ORIGINS", "")
        extra = {
            key: env[var]
            for key, var in (
                ("policy_name", "CONSENTGATE_POLICY_NAME"),
                ("c2pa_cert_chain", "CONSENTGATE_C2PA_CERT_CHAIN"),
                ("c2pa_key", "CONSENTGATE_C2PA_KEY"),
                ("c2pa_trust_anchors", "CONSENTGATE_C2PA_TRUST_ANCHORS"),
                ("public_url", "CONSENTGATE_PUBLIC_URL"),
                ("jobs_webhook_hosts", "CONSENTGATE_WEBHOOK_HOSTS"),  # allowlist; unset: no webhooks
                ("jobs_max_queued_per_tenant", "CONSENTGATE_JOBS_MAX_QUEUED_PER_TENANT"),
                ("jobs_max_bytes_per_tenant", "CONSENTGATE_JOBS_MAX_BYTES_PER_TENANT"),
                ("blob_store", "CONSENTGATE_BLOB_STORE"),
                ("subject_erasure", "CONSENTGATE_SUBJECT_ERASURE"),  # immediate | queued (default)
                ("audit_publish", "CONSENTGATE_AUDIT_PUBLISH"),  # a directory or an http(s) URL
                ("malloc_trim_s", "CONSENTGATE_MALLOC_TRIM_S"),  # glibc heap back to the OS every N s; 0: off
                ("malloc_arena_max", "CONSENTGATE_MALLOC_ARENA_MAX"),  # glibc arenas (default: CPUs, >= 2); 0: glibc's
                ("malloc_stats", "CONSENTGATE_MALLOC_STATS"),  # a file: a JSON line of glibc heap stats per trim
            )
            if env.get(var)
        }
        return cls(
            data_dir=Path(env.get("CONSENTGATE_DATA_DIR", "./data")),
            policies_dir=Path(env.get("CONSENTGATE_POLICIES", "./policies")),
            database_url=env.get("CONSENTGATE_DATABASE_URL") or None,
            keystore_url=env.get("CONSENTGATE_KEYSTORE_URL") or None,
            operator_tenant=env.get("CONSENTGATE_OPERATOR_TENANT", "operator"),
            tenants=tuple(t.strip() for t in env.get("CONSENTGATE_TENANTS", "").split(",") if t.strip()),
            console_session_idle_s=_env_float("CONSENTGATE_CONSOLE_IDLE_S", 1800.0),
            console_session_max_s=_env_float("CONSENTGATE_CONSOLE_MAX_S", 43200.0),
            max_upload_bytes=_env_int("CONSENTGATE_MAX_UPLOAD_BYTES", 50 * 1024 * 1024),
            max_pixels=_env_int("CONSENTGATE_MAX_PIXELS", 4096 * 4096),
            model_threads=_env_int("CONSENTGATE_MODEL_THREADS", min(2, os.cpu_count() or 1)),
            split_below=int(env["CONSENTGATE_SPLIT_BELOW"]) if env.get("CONSENTGATE_SPLIT_BELOW") else None,
            model_timeout_s=_env_float("CONSENTGATE_MODEL_TIMEOUT_S", 10.0),
            check_deadline_s=_env_float("CONSENTGATE_CHECK_DEADLINE_S", 30.0),
            input_decision_max_age_s=_env_float("CONSENTGATE_INPUT_DECISION_MAX_AGE_S", 3600.0),
            audit_checkpoint_every=_env_int("CONSENTGATE_AUDIT_CHECKPOINT_EVERY", 256),
            audit_checkpoint_interval_ms=_env_int("CONSENTGATE_AUDIT_CHECKPOINT_MS", 1000),
            policy_trust_key=Path(trust) if trust else None,
            redis_url=env.get("CONSENTGATE_REDIS_URL") or None,
            rate_limit_per_s=_env_float("CONSENTGATE_RATE_LIMIT_PER_S", 50.0),
            rate_limit_burst=_env_int("CONSENTGATE_RATE_LIMIT_BURST", 100),
            cors_origins=tuple(o.strip() for o in cors.split(",") if o.strip()),
            audit_origin=env.get("CONSENTGATE_AUDIT_ORIGIN", "consentgate.local/audit"),
            model_backend=env.get("CONSENTGATE_MODEL_BACKEND", "inprocess") or "inprocess",
            ray_address=env.get("CONSENTGATE_RAY_ADDRESS") or None,
            ray_families=tuple(f.strip() for f in env.get("CONSENTGATE_RAY_FAMILIES", "nsfw,face,text").split(",")
                               if f.strip()),
            log_format=env.get("CONSENTGATE_LOG_FORMAT", "text") or "text",
            extra=extra,
        )
