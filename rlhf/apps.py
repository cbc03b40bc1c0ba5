from django.apps import AppConfig


class RlhfConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "rlhf"
    verbose_name = "RLHF: snapshots and training runs"

    def ready(self):
        from annotation.services import hooks
        from rlhf.snapshots.selectors import snapshot_holds_label
        from rlhf.snapshots.services import snapshots_withdraw_for_sealed_text

        # A label frozen into a snapshot can no longer be withdrawn by its author's undo.
        if snapshot_holds_label not in hooks.label_frozen_guards:
            hooks.label_frozen_guards.append(snapshot_holds_label)
        # A sealed text withdraws the snapshots holding it (before the registry's hook, which
        # lists the versions trained on them).
        if snapshots_withdraw_for_sealed_text not in hooks.text_sealed_hooks:
            hooks.text_sealed_hooks.append(snapshots_withdraw_for_sealed_text)
