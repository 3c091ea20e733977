from django.urls import path

from ingest import views

urlpatterns = [
    path("ingest/<str:slot_id>", views.ingest, name="ingest"),
    path("public/results/<uuid:job_id>", views.public_result, name="public-result"),
    path(
        "public/results/<uuid:job_id>/thumbnail",
        views.public_result_thumbnail,
        name="public-result-thumbnail",
    ),
    path("public/media/<uuid:media_id>", views.public_media, name="public-media"),
]
