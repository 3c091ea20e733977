"""`python manage.py set_ingest_password`: rotate the password the booth sends with each photo."""

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.services import set_ingest_password
from photobooth.errors import PhotoboothError


class Command(BaseCommand):
    help = "Set the ingest password (read from --stdin or asked for; never from the command line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stdin", action="store_true", help="Read the password from standard input."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("New ingest password: ")
            if getpass.getpass("Again: ") != password:
                raise CommandError("The two passwords differ.")
        try:
            set_ingest_password(password=password, changed_by="manage.py set_ingest_password")
        except PhotoboothError as error:
            raise CommandError(error.message) from error
        self.stdout.write("Ingest password changed; it applies to the next upload.")
