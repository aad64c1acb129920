from typing import ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from bai_platform.settings import Environment, ServiceSettings


class _WithSecret(ServiceSettings):
    secret_fields: ClassVar[tuple[str, ...]] = ("signing_secret",)
    signing_secret: SecretStr = SecretStr("dev-insecure-default")


def test_insecure_default_secret_is_accepted_in_dev() -> None:
    settings = _WithSecret(environment=Environment.DEV)
    assert settings.signing_secret.get_secret_value() == "dev-insecure-default"


@pytest.mark.parametrize("value", ["dev-insecure-default", "changeme", "short-but-real"])
def test_production_refuses_insecure_or_short_secrets(value: str) -> None:
    with pytest.raises(ValidationError, match="BAI_SIGNING_SECRET"):
        _WithSecret(environment=Environment.PRODUCTION, signing_secret=SecretStr(value))


def test_production_accepts_a_long_random_secret() -> None:
    secret = SecretStr("x9" * 24)
    assert _WithSecret(environment=Environment.PRODUCTION, signing_secret=secret).is_production


def test_docs_are_closed_in_production_unless_asked_for() -> None:
    assert ServiceSettings(environment=Environment.DEV).show_docs
    assert not ServiceSettings(environment=Environment.PRODUCTION).show_docs
    assert ServiceSettings(environment=Environment.PRODUCTION, docs_enabled=True).show_docs


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAI_PORT", "9123")
    monkeypatch.setenv("BAI_DATABASE_URL", "postgresql+asyncpg://u:p@db:5432/bai")
    settings = ServiceSettings()
    assert settings.port == 9123
    assert "p@db" not in repr(settings)
