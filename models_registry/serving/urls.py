from django.urls import path

from models_registry.serving import gateway

urlpatterns = [
    path(
        "<int:project_id>/v1/chat/completions",
        gateway.chat_completions,
        name="gateway-chat-completions",
    ),
    path("<int:project_id>/v1/models", gateway.models, name="gateway-models"),
    path("<int:project_id>/v1/feedback", gateway.feedback, name="gateway-feedback"),
]
