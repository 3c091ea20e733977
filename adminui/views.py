"""Dashboard pages: login/logout and the home page with the 15 slot cards.

Views only gather what services and selectors return and render it; rules live in the services
the API uses too (accounts.services, ingest.selectors, jobqueue.stats, providers.secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import login as start_session
from django.contrib.auth import logout as end_session
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.services import login as check_login
from adminui.access import requires_scope
from ingest.models import Slot
from ingest.selectors import RecentResult, recent_results
from jobqueue.stats import Counts, counts_by_slot
from providers.registry import all_providers
from providers.secrets import key_status


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    """Username and password form; the same throttling and audit as the API's login."""
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("dashboard-home")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = reverse("dashboard-home")
    context = {"next": next_url, "error": "", "username": ""}
    status = 200
    if request.method == "POST":
        username = request.POST.get("username", "")[:150]
        password = request.POST.get("password", "")
        outcome = check_login(request, username, password)
        if outcome.user is not None:
            start_session(request, outcome.user)
            return redirect(next_url)
        context["username"] = username
        if outcome.throttle is not None:
            minutes = max(1, round(outcome.throttle.retry_after / 60))
            context["error"] = f"Too many failed logins. Try again in about {minutes} min."
            status = 429
        else:
            context["error"] = "Wrong username or password."
            status = 401
    response = render(request, "adminui/login.html", context, status=status)
    if status == 429 and outcome.throttle is not None:
        response["Retry-After"] = str(outcome.throttle.retry_after)
    return response


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    end_session(request)
    return redirect("dashboard-login")


@dataclass(frozen=True)
class SlotCard:
    slot: Slot
    provider_label: str
    operation_label: str
    missing_key: bool
    last_result: RecentResult | None
    today: Counts

    @property
    def success_rate(self) -> int | None:
        finished = self.today.ingest_count
        return round(100 * self.today.success / finished) if finished else None


def start_of_today() -> datetime:
    """Midnight in the installation's time zone (TIME_ZONE), as an aware datetime."""
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


@requires_scope("slots:read")
def home(request: HttpRequest) -> HttpResponse:
    """The 15 slots at a glance: what each runs, whether it works today, its last result."""
    providers = all_providers()
    today = counts_by_slot(since=start_of_today())
    cards = []
    for slot in Slot.objects.order_by("id"):
        provider = providers.get(slot.provider_id)
        operation = provider.operations.get(slot.operation_id) if provider else None
        latest = recent_results(slot.id, limit=1)
        cards.append(
            SlotCard(
                slot=slot,
                provider_label=provider.label if provider else f"{slot.provider_id} (missing)",
                operation_label=operation.label if operation else slot.operation_id,
                missing_key=bool(
                    provider
                    and provider.requires_api_key
                    and not key_status(provider.id).is_configured
                ),
                last_result=latest[0] if latest else None,
                today=today.get(slot.id, Counts()),
            )
        )
    return render(
        request,
        "adminui/home.html",
        {
            "cards": cards,
            "public_base_url": settings.PUBLIC_BASE_URL,
            "time_zone": settings.TIME_ZONE,
            "nav": "slots",
        },
    )
