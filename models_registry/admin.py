"""Admin pages: versions are editable only through services; the audit log is read-only."""

from django.contrib import admin

from models_registry.models import AuditEvent, GenerationJob, ModelAlias, ModelVersion


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "name", "version", "kind", "state", "created_at"]
    list_filter = ["kind", "state"]


@admin.register(ModelAlias)
class ModelAliasAdmin(ReadOnlyAdmin):
    list_display = ["project", "name", "version", "updated_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "version", "action", "to_state", "alias", "actor_name"]
    list_filter = ["action"]


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "version", "status", "done", "total", "created_at"]
