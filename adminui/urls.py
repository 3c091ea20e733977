"""Dashboard pages under /dashboard/."""

from django.urls import path
from django.views.generic import RedirectView

from adminui import (
    archive_pages,
    gallery_pages,
    guest_pages,
    monitor_pages,
    settings_pages,
    slot_pages,
    views,
)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard-home"), name="root"),
    path("dashboard/", views.home, name="dashboard-home"),
    path("dashboard/login", views.login_page, name="dashboard-login"),
    path("dashboard/logout", views.logout_page, name="dashboard-logout"),
    *slot_pages.urlpatterns,
    *monitor_pages.urlpatterns,
    *settings_pages.urlpatterns,
    *guest_pages.urlpatterns,
    *gallery_pages.urlpatterns,
    *archive_pages.urlpatterns,
]
