from django.apps import AppConfig


class AdminUIConfig(AppConfig):
    name = "adminui"
    verbose_name = "Admin dashboard and API"
