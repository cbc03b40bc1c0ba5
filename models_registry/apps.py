from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self):
        # The registry sits above rlhf: it hooks into runs instead of rlhf importing it.
        from annotation.services import hooks as annotation_hooks
        from models_registry import handover, review_cycle, run_versions, services
        from rlhf.runs import services as run_services
        from rlhf.runs import versions

        hook = review_cycle.loop_round_start_next
        if hook not in services.version_approved_hooks:
            services.version_approved_hooks.append(hook)
        versions.install(run_versions.RunVersionRegistry())
        from models_registry.selectors import model_versions_for_sealed_text

        if model_versions_for_sealed_text not in annotation_hooks.text_sealed_hooks:
            annotation_hooks.text_sealed_hooks.append(model_versions_for_sealed_text)
        if review_cycle.prompts_in_use not in annotation_hooks.retention_prompt_guards:
            annotation_hooks.retention_prompt_guards.append(review_cycle.prompts_in_use)
        # Order matters: the candidate is registered before its review round starts.
        for hook in (handover.training_run_register_candidate, handover.training_run_start_review):
            if hook not in run_services.training_run_succeeded_hooks:
                run_services.training_run_succeeded_hooks.append(hook)
