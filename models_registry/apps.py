from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self):
        from models_registry import review_cycle, services

        hook = review_cycle.next_round_on_approval
        if hook not in services.version_approved_hooks:
            services.version_approved_hooks.append(hook)
