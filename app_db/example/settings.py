"""The example app's limits, from ``EXAMPLE_*`` variables."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ExampleSettings(BaseSettings):
    """The app's limits, each read from ``EXAMPLE_`` and the upper-case name of its field."""

    model_config = SettingsConfigDict(
        env_prefix="EXAMPLE_", env_file=".env", extra="ignore", frozen=True
    )

    max_body_bytes: int = Field(default=MIB, ge=0)
    """Largest request body (413 beyond it) on every route but the CSV import."""
    max_upload_bytes: int = Field(default=10 * MIB, ge=0)
    """Largest CSV import request body, multipart framing included."""
    import_timeout: float = Field(default=60.0, gt=0)
    """Seconds a CSV import may take in all, checking and COPY; 503 beyond."""
    public_url: str = "http://127.0.0.1:8000"
    """Where users reach the app: the links of reset and verification mails start with it."""
    trusted_origins: tuple[str, ...] = ()
    """Other sites' origins (``https://app.example.com``) whose POST, PUT, PATCH and DELETE
    are served; every other cross-site one is refused with 403. A JSON list in
    ``EXAMPLE_TRUSTED_ORIGINS``."""
