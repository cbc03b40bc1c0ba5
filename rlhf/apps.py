from django.apps import AppConfig


class RlhfConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "rlhf"
    verbose_name = "RLHF: snapshots and training runs"

    def ready(self):
        from rlhf import run_registration
        from rlhf.runs import services as run_services

        # Order matters: the candidate is registered before its review round starts.
        for hook in (
            run_registration.training_run_register_candidate,
            run_registration.training_run_start_review,
        ):
            if hook not in run_services.training_run_succeeded_hooks:
                run_services.training_run_succeeded_hooks.append(hook)
