"""Server settings: environment variables ``GUWAH_*`` over ``DATA_DIR/guwah.toml`` over defaults.

Why a file *in the data dir*: one operator, one machine, one place to back up. Environment
variables win so that systemd units and tests can override a single value without editing the
file. Explicit arguments to :func:`load_settings` win over both (the CLI's ``--data-dir``).

Nothing here is secret; the server signing key lives in its own 0600 file beside the config.
"""

from __future__ import annotations

import json
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("/var/lib/guwah")
CONFIG_FILE_NAME = "guwah.toml"
SERVER_KEY_FILE_NAME = "server-signing-key"

GiB = 1024**3

# Which guwah.toml the next Settings() reads; set by load_settings (the path depends on data_dir,
# which is itself a setting, so it cannot be a static model_config entry).
_toml_file: ContextVar[Path | None] = ContextVar("guwah_toml_file", default=None)


class SettingsError(ValueError):
    """A setting is missing or wrong; the message is one sentence an operator can act on."""


class Settings(BaseSettings):
    """Every knob of the server. See docs/operator-guide.md for the operator's view."""

    model_config = SettingsConfigDict(env_prefix="GUWAH_", extra="forbid")

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # "" -> sqlite:///{data_dir}/guwah.sqlite3
    blob_dir: Path | None = None  # None -> data_dir / "blobs"
    blob_backend: Literal["fs", "db"] = "fs"  # "db": blobs in the database (several app nodes)

    max_file_bytes: int = Field(default=4 * GiB, gt=0)
    max_files: int = Field(default=20, gt=0)
    max_text_chars: int = Field(default=100_000, gt=0)
    max_pending_bytes: int = Field(default=20 * GiB, gt=0)
    min_free_bytes: int = Field(default=1 * GiB, ge=0)
    upload_expiry_hours: int = Field(default=48, gt=0)
    kdf_concurrency: int = Field(default=2, gt=0)
    # Resource control against clients that hold something by sending nothing (see
    # docs/threat-model.md, "Flooding and stalling"). A request body that delivers no byte for
    # body_idle_seconds, or fewer than body_min_rate bytes/s averaged over each
    # body_rate_window_seconds, is cut off: a 20 KB/s witness on a bad Tor circuit sends
    # 1.2 MB a minute, far above 1 KiB/s, and survives a 60 s stall of the circuit.
    body_idle_seconds: float = Field(default=60.0, gt=0)
    body_min_rate: int = Field(default=1024, ge=0)
    body_rate_window_seconds: float = Field(default=60.0, gt=0)
    header_timeout_seconds: float = Field(default=20.0, gt=0)
    budget_wait_seconds: float = Field(default=30.0, ge=0)
    token_max_uploads: int = Field(default=24, gt=0)
    token_max_reserved_bytes: int = Field(default=8 * GiB, gt=0)
    max_open_uploads: int = Field(default=2000, gt=0)
    upload_idle_seconds: float = Field(default=600.0, gt=0)
    # The witness site's languages (catalog codes: en ug kk ru zh_Hans tr); empty = every shipped
    # language. A language left out behaves like an unknown one: pages fall back to the default.
    languages: list[str] = Field(default_factory=list)
    default_language: str = "en"

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        self.data_dir = Path(self.data_dir)
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'guwah.sqlite3'}"
        if self.blob_dir is None:
            self.blob_dir = self.data_dir / "blobs"
        return self

    @property
    def blob_path(self) -> Path:
        """``blob_dir`` as a non-optional Path (always filled by the validator)."""
        assert self.blob_dir is not None
        return self.blob_dir

    @property
    def config_file(self) -> Path:
        return self.data_dir / CONFIG_FILE_NAME

    @property
    def server_key_file(self) -> Path:
        """Ed25519 seed (base64, one line, 0600) that signs export bundles."""
        return self.data_dir / SERVER_KEY_FILE_NAME

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_file.get()
        if toml is not None and toml.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data dir: explicit argument, then ``GUWAH_DATA_DIR``, then /var/lib/guwah."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser().absolute()
    env = os.environ.get("GUWAH_DATA_DIR")
    if env:
        return Path(env).expanduser().absolute()
    return DEFAULT_DATA_DIR


def load_settings(data_dir: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings for one data dir; raises SettingsError with one readable sentence."""
    directory = resolve_data_dir(data_dir)
    toml = directory / CONFIG_FILE_NAME
    token = _toml_file.set(toml)
    try:
        return Settings(data_dir=directory, **overrides)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{toml}: not valid TOML ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise SettingsError(f"setting {where}: {first.get('msg', 'invalid')}") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {toml}: {exc.strerror or exc}") from None
    finally:
        _toml_file.reset(token)


def default_config_text(settings: Settings) -> str:
    """The guwah.toml that ``guwah init`` writes: commented defaults the operator may change."""
    lines = [
        "# Guwah server settings. Environment variables GUWAH_<NAME> override these.",
        '# database_url = "postgresql+psycopg://guwah@/guwah"  # default: SQLite in this dir',
        f'blob_backend = "{settings.blob_backend}"  # "fs" (one machine) or "db" (several)',
        f"max_file_bytes = {settings.max_file_bytes}",
        f"max_files = {settings.max_files}",
        f"max_text_chars = {settings.max_text_chars}",
        f"max_pending_bytes = {settings.max_pending_bytes}",
        f"min_free_bytes = {settings.min_free_bytes}",
        f"upload_expiry_hours = {settings.upload_expiry_hours}",
        f"kdf_concurrency = {settings.kdf_concurrency}",
        f"body_idle_seconds = {settings.body_idle_seconds}",
        f"body_min_rate = {settings.body_min_rate}",
        f"body_rate_window_seconds = {settings.body_rate_window_seconds}",
        f"header_timeout_seconds = {settings.header_timeout_seconds}",
        f"budget_wait_seconds = {settings.budget_wait_seconds}",
        f"token_max_uploads = {settings.token_max_uploads}",
        f"token_max_reserved_bytes = {settings.token_max_reserved_bytes}",
        f"max_open_uploads = {settings.max_open_uploads}",
        f"upload_idle_seconds = {settings.upload_idle_seconds}",
        f"languages = {json.dumps(settings.languages)}  # [] = every shipped language",
        f'default_language = "{settings.default_language}"',
    ]
    if settings.database_url and not settings.is_sqlite:
        lines[1] = f'database_url = "{settings.database_url}"'
    return "\n".join(lines) + "\n"
