"""GET /api/jobs (filtered, sorted, paginated) and GET /api/jobs/<id> (with its processing log).

Both need the `stats:read` permission. The queries live in jobqueue.job_queries.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.urls import path
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS, errors, valid_query
from jobqueue import job_queries
from jobqueue.job_queries import JobFilters

# DRF refuses NUL characters anyway (no database stores them); this also documents it.
NO_NUL = RegexValidator(r"^[^\x00]*$", message="Null characters are not allowed.")


class JobListQuery(serializers.Serializer[Any]):
    """The query parameters of GET /api/jobs."""

    status = serializers.ChoiceField(
        choices=job_queries.STATUSES,
        required=False,
        help_text="pending / processing (not finalized yet), succeeded or failed (finalized).",
    )
    is_finalized = serializers.BooleanField(required=False)
    failure_reason = serializers.ChoiceField(choices=job_queries.FAILURE_REASONS, required=False)
    slot = serializers.CharField(
        max_length=32,
        required=False,
        trim_whitespace=False,
        validators=[NO_NUL],
        help_text="A slot id (exact match).",
    )
    provider = serializers.CharField(
        max_length=64,
        required=False,
        trim_whitespace=False,
        validators=[NO_NUL],
        help_text="A provider id (exact match).",
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="ISO 8601; jobs created at or after this instant."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="ISO 8601; jobs created before this instant."
    )
    sort = serializers.ChoiceField(
        choices=job_queries.SORTS,
        default=job_queries.DEFAULT_SORT,
        help_text="Field to sort by; a leading '-' sorts newest/latest first.",
    )
    page = serializers.IntegerField(min_value=1, max_value=job_queries.MAX_PAGE, default=1)
    page_size = serializers.IntegerField(
        min_value=1, max_value=job_queries.MAX_PAGE_SIZE, default=job_queries.DEFAULT_PAGE_SIZE
    )


class DeadlineSerializer(serializers.Serializer[Any]):
    remaining_ms = serializers.IntegerField(min_value=0, help_text="0 once the deadline passed.")
    is_expired = serializers.BooleanField()


class TimingsSerializer(serializers.Serializer[Any]):
    queue_wait_ms = serializers.IntegerField(
        allow_null=True,
        min_value=0,
        help_text="Arrival until (last) pick-up by a worker, or until finalization if it never "
        "left the queue; null while waiting.",
    )
    processing_ms = serializers.IntegerField(
        allow_null=True,
        min_value=0,
        help_text="(Last) pick-up until finalization; null until both happened.",
    )
    total_elapsed_ms = serializers.IntegerField(
        allow_null=True, min_value=0, help_text="Arrival until finalization; null until then."
    )


class ResultSerializer(serializers.Serializer[Any]):
    download_url = serializers.URLField(help_text="Public download link (410 once expired).")
    mime = serializers.CharField()
    size = serializers.IntegerField(min_value=0, help_text="Bytes.")
    expires_at = serializers.DateTimeField()


class JobSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    slot_id = serializers.CharField()
    provider_id = serializers.CharField()
    operation_id = serializers.CharField()
    status = serializers.ChoiceField(choices=job_queries.STATUSES)
    is_finalized = serializers.BooleanField()
    failure_reason = serializers.ChoiceField(
        choices=job_queries.FAILURE_REASONS, allow_null=True, help_text="null unless failed."
    )
    failure_detail = serializers.CharField(
        allow_blank=True, help_text="What went wrong, for failed jobs; empty otherwise."
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finalized_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(help_text="When the booth's answer is due.")
    attempt_count = serializers.IntegerField(min_value=0)
    deadline = DeadlineSerializer()
    timings = TimingsSerializer()
    result = ResultSerializer(allow_null=True, help_text="Only for succeeded jobs.")


class JobPageSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(min_value=0, help_text="Matching jobs on all pages.")
    page = serializers.IntegerField(min_value=1)
    page_size = serializers.IntegerField(min_value=1, max_value=job_queries.MAX_PAGE_SIZE)
    results = JobSerializer(many=True)


class LogEntrySerializer(serializers.Serializer[Any]):
    event = serializers.CharField()
    created_at = serializers.DateTimeField()
    details = serializers.DictField()


class JobDetailSerializer(JobSerializer):
    log = LogEntrySerializer(many=True, help_text="Processing events, oldest first.")


class JobDetailSchema(OpenApiSerializerExtension):
    """JobDetail is documented as Job plus `log` (allOf), so the Job fields and their enums
    live in one component only."""

    target_class = JobDetailSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        job = auto_schema.resolve_serializer(JobSerializer, direction)
        entry = auto_schema.resolve_serializer(LogEntrySerializer, direction)
        return {
            "allOf": [
                job.ref,
                {
                    "type": "object",
                    "properties": {
                        "log": {
                            "type": "array",
                            "items": entry.ref,
                            "description": "Processing events, oldest first.",
                        }
                    },
                    "required": ["log"],
                },
            ]
        }


class JobListView(APIView):
    required_scopes = {"GET": "stats:read"}

    @extend_schema(
        operation_id="jobs_list",
        parameters=[JobListQuery],
        responses={200: JobPageSerializer, **AUTHENTICATED_ERRORS, **errors(400)},
        tags=["jobs"],
        description="Jobs, newest first unless `sort` says otherwise, one page at a time. "
        "A page past the last one is empty. Invalid parameters are a 400 naming each one; "
        "unknown parameters are ignored.",
    )
    def get(self, request: Request) -> Response:
        # A plain dict: with a QueryDict, a missing boolean would read as false.
        params = valid_query(JobListQuery(data=request.query_params.dict()))
        page = job_queries.job_page(
            JobFilters(
                status=params.get("status"),
                is_finalized=params.get("is_finalized"),
                failure_reason=params.get("failure_reason"),
                slot_id=params.get("slot"),
                provider_id=params.get("provider"),
                created_after=params.get("created_after"),
                created_before=params.get("created_before"),
            ),
            sort=params["sort"],
            page=params["page"],
            page_size=params["page_size"],
        )
        return Response(JobPageSerializer(page).data)


class JobDetailView(APIView):
    required_scopes = {"GET": "stats:read"}

    @extend_schema(
        operation_id="jobs_retrieve",
        parameters=[OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: JobDetailSerializer, **AUTHENTICATED_ERRORS, **errors(404)},
        tags=["jobs"],
        description="One job with its processing log. 404 for an unknown id.",
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobDetailSerializer(job_queries.job_detail(job_id)).data)


urlpatterns = [
    path("jobs", JobListView.as_view(), name="api-jobs"),
    path("jobs/<str:job_id>", JobDetailView.as_view(), name="api-job"),
]
