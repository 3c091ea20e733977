"""`python manage.py bootstrap`: first-start setup. Creates an admin and an ingest password if none.

Never changes what already exists, so running it again (every `make run` does) is safe.
"""

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from ingest.models import IngestSettings
from ingest.services import set_ingest_password


class Command(BaseCommand):
    help = "Create an admin account and an ingest password when none exist (prints them once)."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if not user_model.objects.filter(is_superuser=True).exists():
            username = settings.BOOTSTRAP_ADMIN_USERNAME
            password = settings.BOOTSTRAP_ADMIN_PASSWORD or secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email="", password=password)
            if settings.BOOTSTRAP_ADMIN_PASSWORD:
                self.stdout.write(
                    f"Admin account created: {username} (password from ADMIN_PASSWORD)"
                )
            else:
                self.stdout.write(
                    f"Admin account created: {username} / {password}\n"
                    "  (shown only now; change it with: python manage.py changepassword "
                    f"{username})"
                )
        if not IngestSettings.load().has_ingest_password:
            password = settings.BOOTSTRAP_INGEST_PASSWORD or secrets.token_urlsafe(9)
            set_ingest_password(password=password, changed_by="bootstrap")
            if settings.BOOTSTRAP_INGEST_PASSWORD:
                self.stdout.write("Ingest password set from INGEST_PASSWORD")
            else:
                self.stdout.write(
                    f"Ingest password: {password}\n"
                    "  (shown only now; enter it in DSLR Remote Pro; change it with: "
                    "python manage.py set_ingest_password)"
                )
