from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from annotation.models import Membership, Project
from annotation.services.erasure import user_erase
from config.errors import DomainError


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "overlap", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]
    list_filter = ["role"]


# Accounts: the admin's "delete" stops at an annotator's labels (they are protected); erasure
# is the way to remove a person whose labels stay (annotation.services.erasure).
User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class TandemUserAdmin(UserAdmin):
    actions = ["erase_selected"]

    @admin.action(description="Erase selected accounts (labels kept under a pseudonym)")
    def erase_selected(self, request, queryset):
        for user in queryset.order_by("pk"):
            name = user.username
            try:
                result = user_erase(user=user, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"{name}: {exc.message}", level=messages.ERROR)
            else:
                self.message_user(request, f"{name} erased; now {result.pseudonym}")
