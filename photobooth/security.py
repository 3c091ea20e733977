"""Security headers on every response: a strict Content-Security-Policy and friends.

Django's SecurityMiddleware already sends X-Content-Type-Options: nosniff, Referrer-Policy and
Cross-Origin-Opener-Policy, and XFrameOptionsMiddleware sends X-Frame-Options: DENY. This adds
the Content-Security-Policy (no inline scripts or styles anywhere: every page's JavaScript and
CSS are files of ours) and a Permissions-Policy that turns off features no page uses.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Result previews and QR codes may be data: or blob: URLs in the try-it page.
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
