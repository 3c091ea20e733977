"""Provider API keys at rest: encrypted, write-only, environment as the fallback, rotatable."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.utils import timezone

from jobqueue import files, services
from jobqueue.models import FailureReason, Job, ProcessingLog
from jobqueue.worker import process_job
from providers.models import ProviderKey
from providers.secrets import (
    SecretsUnreadable,
    api_key_for,
    key_status,
    rotate_encryption,
    set_api_key,
)
from tests.support.images import make_photo

pytestmark = pytest.mark.django_db

STORED_KEY = "sk-stored-0123456789abcdef"
ENV_KEY = "env-key-fedcba9876543210"


def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def encryption_key(settings: Any) -> str:
    """One known encryption key in use, and a known environment key for gemini only."""
    key = fernet_key()
    settings.SECRETS_ENCRYPTION_KEYS = [key]
    settings.PROVIDER_API_KEYS = {"gemini": ENV_KEY, "turbotext": "", "openai": ""}
    return key


def raw_column(provider_id: str) -> str:
    """The stored column as the database holds it, bypassing the model."""
    table = connection.ops.quote_name(ProviderKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT encrypted_key FROM {table} WHERE provider_id = %s", [provider_id])  # noqa: S608
        row = cursor.fetchone()
    assert row is not None, f"no stored key for {provider_id}"
    return str(row[0])


def test_a_stored_key_is_encrypted_in_the_database_and_returned_to_the_worker(
    encryption_key: str,
) -> None:
    set_api_key("openai", f"  {STORED_KEY}\n", changed_by="alice")

    stored = raw_column("openai")
    assert STORED_KEY not in stored
    assert STORED_KEY.encode().hex() not in stored
    assert Fernet(encryption_key.encode()).decrypt(stored.encode()).decode() == STORED_KEY
    assert api_key_for("openai") == STORED_KEY  # surrounding whitespace dropped
    assert STORED_KEY not in str(ProviderKey.objects.get(provider_id="openai"))


def test_the_stored_key_takes_precedence_over_the_environment(encryption_key: str) -> None:
    assert api_key_for("gemini") == ENV_KEY

    set_api_key("gemini", STORED_KEY, changed_by="alice")

    assert api_key_for("gemini") == STORED_KEY


def test_an_empty_value_removes_the_stored_key_and_the_environment_applies_again(
    encryption_key: str,
) -> None:
    set_api_key("gemini", STORED_KEY)
    set_api_key("openai", STORED_KEY)

    set_api_key("gemini", "")
    set_api_key("openai", "   ")

    assert not ProviderKey.objects.filter(provider_id__in=["gemini", "openai"]).exists()
    assert api_key_for("gemini") == ENV_KEY
    assert api_key_for("openai") == ""


def test_setting_a_key_again_replaces_it(encryption_key: str) -> None:
    set_api_key("openai", STORED_KEY)
    first_token = raw_column("openai")

    set_api_key("openai", "sk-replacement-2222", changed_by="bob")

    assert ProviderKey.objects.filter(provider_id="openai").count() == 1
    assert raw_column("openai") != first_token
    assert api_key_for("openai") == "sk-replacement-2222"


def test_key_status_says_where_the_key_comes_from_and_who_set_it_but_not_the_key(
    encryption_key: str,
) -> None:
    before = timezone.now()
    set_api_key("openai", STORED_KEY, changed_by="alice")
    after = timezone.now()

    stored = key_status("openai")
    from_env = key_status("gemini")
    missing = key_status("turbotext")

    assert (stored.is_configured, stored.source, stored.updated_by) == (True, "settings", "alice")
    assert stored.updated_at is not None and before <= stored.updated_at <= after
    assert (from_env.is_configured, from_env.source, from_env.updated_at) == (
        True,
        "environment",
        None,
    )
    assert (missing.is_configured, missing.source, missing.updated_at, missing.updated_by) == (
        False,
        "",
        None,
        "",
    )
    for status in (stored, from_env):
        assert STORED_KEY not in repr(status) and ENV_KEY not in repr(status)


def test_rotation_re_encrypts_with_the_new_key_so_the_old_one_can_be_dropped(
    settings: Any,
) -> None:
    old, new = fernet_key(), fernet_key()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    set_api_key("gemini", STORED_KEY)
    set_api_key("openai", "sk-second-key-3333")
    token_under_old = raw_column("gemini")

    settings.SECRETS_ENCRYPTION_KEYS = [new, old]
    assert api_key_for("gemini") == STORED_KEY  # both keys decrypt meanwhile
    assert rotate_encryption() == 2

    assert raw_column("gemini") != token_under_old
    settings.SECRETS_ENCRYPTION_KEYS = [new]
    assert api_key_for("gemini") == STORED_KEY
    assert api_key_for("openai") == "sk-second-key-3333"
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    with pytest.raises(SecretsUnreadable):
        api_key_for("gemini")


def test_a_wrong_encryption_key_is_reported_without_revealing_any_secret(settings: Any) -> None:
    right, wrong = fernet_key(), fernet_key()
    settings.SECRETS_ENCRYPTION_KEYS = [right]
    set_api_key("gemini", STORED_KEY)
    token = raw_column("gemini")
    settings.SECRETS_ENCRYPTION_KEYS = [wrong]

    with pytest.raises(SecretsUnreadable) as reading:
        api_key_for("gemini")
    with pytest.raises(SecretsUnreadable) as rotating:
        rotate_encryption()

    assert "SECRETS_ENCRYPTION_KEYS" in str(reading.value)
    assert "gemini" in str(rotating.value)
    for error in (reading.value, rotating.value):
        message = f"{error} {error!r}"
        for secret in (STORED_KEY, token, right, wrong):
            assert secret not in message
        assert error.__cause__ is None and error.__suppress_context__
    assert raw_column("gemini") == token  # nothing was rewritten


def test_a_job_whose_stored_key_cannot_be_decrypted_fails_as_not_configured(
    settings: Any,
) -> None:
    settings.SECRETS_ENCRYPTION_KEYS = [fernet_key()]
    set_api_key("testing", STORED_KEY)
    settings.SECRETS_ENCRYPTION_KEYS = [fernet_key()]  # the key that encrypted it is gone
    photo = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=64)
    )
    services.enqueue_job(
        configuration=services.JobConfiguration(
            slot_id="slot-005",
            provider_id="testing",
            operation_id="sleep",
            settings={"seconds": 0},
            template_refs={},
        ),
        payload=services.StoredPayload(
            path=photo.path, mime="image/jpeg", size=photo.size, sha256=photo.sha256
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=1),
    )
    (job,) = services.acquire_jobs(worker_id="worker-a", limit=1)

    process_job(job)

    job.refresh_from_db()
    assert job.is_finalized and not job.succeeded
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert job.failure_detail.startswith("not_configured")
    assert "SECRETS_ENCRYPTION_KEYS" in job.failure_detail
    # The provider was never called, and no trace of the key is left anywhere.
    assert not job.logs.filter(event=ProcessingLog.Event.PROVIDER_CALL).exists()
    rows = [
        str(row)
        for row in [
            *Job.objects.filter(id=job.id).values(),
            *ProcessingLog.objects.filter(job_id=job.id).values(),
        ]
    ]
    assert all(STORED_KEY not in row for row in rows)
