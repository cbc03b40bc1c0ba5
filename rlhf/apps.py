from django.apps import AppConfig


class RlhfConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "rlhf"
    verbose_name = "RLHF: snapshots and training runs"

    def ready(self):
        from annotation.services import hooks
        from rlhf.snapshots.selectors import snapshot_holds_label

        # A label frozen into a snapshot can no longer be withdrawn by its author's undo.
        if snapshot_holds_label not in hooks.label_frozen_guards:
            hooks.label_frozen_guards.append(snapshot_holds_label)
