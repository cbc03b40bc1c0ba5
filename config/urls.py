from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

api_patterns = [
    path("", include("annotation.api.urls")),
    path("", include("annotation.quality.urls")),
    path("", include("annotation.explorer.urls")),
    path("", include("models_registry.api.urls")),
    path("", include("rlhf.snapshots.api.urls")),
    path("", include("rlhf.runs.api.urls")),
    path("", include("rlhf.feedback.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("data/", include("rlhf.snapshots.page_urls")),
    path("runs/", include("rlhf.runs.page_urls")),
    path("models/", include("models_registry.page_urls")),
    path("gateway/", include("models_registry.serving.urls")),
    path("", include("frontend.urls")),
]

# With DEBUG off: styled pages, and JSON errors under /api/ (config/error_views.py).
handler404 = "config.error_views.page_not_found"
handler403 = "config.error_views.permission_denied"
