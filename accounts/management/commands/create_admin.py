"""`python manage.py create_admin`: create or update an admin account and grant it permissions."""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import SCOPES, AuditEvent
from accounts.services import audit, grant


class Command(BaseCommand):
    help = (
        "Create an admin (or update an existing one) and grant permissions: "
        + ", ".join(SCOPES)
        + ". The password comes from --password-env, or is asked for."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--grant",
            action="append",
            default=[],
            metavar="SCOPE",
            help="a permission to grant (repeatable); 'all' grants every one",
        )
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="read the password from this environment variable (never from the command line)",
        )
        parser.add_argument("--superuser", action="store_true", help="make a superuser")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        scopes = list(SCOPES) if "all" in options["grant"] else options["grant"]
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise CommandError(
                f"Unknown permission(s): {', '.join(unknown)}. Known: {', '.join(SCOPES)}, all"
            )
        user_model = get_user_model()
        exists = user_model.objects.filter(username=username).exists()
        # Everything is checked before anything is written: a refusal leaves no half-made user.
        password = self._password(options["password_env"], required=not exists)
        if password and len(password) < 10:
            raise CommandError("The password must be at least 10 characters long.")
        with transaction.atomic():
            user, created = user_model.objects.get_or_create(username=username)
            if password:
                user.set_password(password)
            if options["superuser"]:
                user.is_superuser = True
            user.is_staff = True
            user.save()
            grant(user, scopes)
            audit(
                AuditEvent.Kind.ADMIN_CHANGED,
                actor="manage.py",
                details={
                    "username": username,
                    "created": created,
                    "granted": scopes,
                    "password_changed": bool(password),
                },
            )
        self.stdout.write(
            f"{'Created' if created else 'Updated'} admin {username}"
            + (f"; granted: {', '.join(scopes)}" if scopes else "")
        )

    def _password(self, variable: str | None, *, required: bool) -> str:
        if variable:
            value = os.environ.get(variable, "")
            if not value:
                raise CommandError(f"The environment variable {variable} is empty or unset.")
            return value
        if not required:
            return ""
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The passwords do not match.")
        return first
