"""Admin permissions (Django's own permission rows) and the audit log of security events."""

from __future__ import annotations

from django.db import models

# The permission scopes of the admin API and dashboard, as carried in JWT `permissions` claims.
SCOPES = (
    "settings:read",
    "settings:write",
    "slots:read",
    "slots:write",
    "media:write",
    "stats:read",
)


def codename(scope: str) -> str:
    """Django permission codename for a scope ("slots:read" -> "slots_read")."""
    return scope.replace(":", "_")


class AdminAccess(models.Model):
    """No rows: only declares the scopes as Django permissions (app label `accounts`)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [(codename(scope), scope) for scope in SCOPES]

    def __str__(self) -> str:
        return "admin access"


class AuditEvent(models.Model):
    """A security event: who did what, when, from where. Never a secret."""

    class Kind(models.TextChoices):
        LOGIN_OK = "login_ok"
        LOGIN_FAILED = "login_failed"
        LOGIN_THROTTLED = "login_throttled"
        INGEST_PASSWORD_FAILED = "ingest_password_failed"  # noqa: S105 (an event name)
        INGEST_PASSWORD_ROTATED = "ingest_password_rotated"  # noqa: S105 (an event name)
        PROVIDER_KEY_CHANGED = "provider_key_changed"
        SETTINGS_CHANGED = "settings_changed"
        SLOT_CHANGED = "slot_changed"
        SLOT_STATS_RESET = "slot_stats_reset"
        TEMPLATE_CHANGED = "template_changed"
        ADMIN_CHANGED = "admin_changed"
        GALLERY_CREATED = "gallery_created"
        GALLERY_REVOKED = "gallery_revoked"

    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The user acting, or the username tried on a failed login (which may not exist).
    actor = models.CharField(max_length=150, blank=True, default="")
    client_address = models.GenericIPAddressField(null=True, blank=True)
    # What changed (field names, ids), never values of secrets.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["kind", "actor", "created_at"], name="audit_kind_actor_idx"),
            models.Index(
                fields=["kind", "client_address", "created_at"], name="audit_kind_address_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind} {self.actor}"
