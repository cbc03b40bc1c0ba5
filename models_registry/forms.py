"""Query-string forms of the registry pages: they parse and check input, nothing else."""

from __future__ import annotations

from django import forms

from annotation.models import Project, ProposalKind, ProposalStatus
from models_registry.models import AuditAction, ModelVersion


class AuditFilterForm(forms.Form):
    """The audit log's filters. A value that does not parse is refused by name (HTTP 400)."""

    version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        error_messages={"invalid_choice": "No such version in this project."},
    )
    actor = forms.CharField(required=False, max_length=150)
    action = forms.ChoiceField(choices=[("", "any"), *AuditAction.choices], required=False)
    date_from = forms.DateField(required=False)
    date_to = forms.DateField(required=False)
    page = forms.IntegerField(required=False, min_value=1)

    def __init__(self, data, *, project: Project):
        super().__init__(data)
        # A version of another project is not a valid choice: the filter cannot reach across.
        self.fields["version"].queryset = ModelVersion.objects.filter(project=project)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned


class ProposalFilterForm(forms.Form):
    """The proposals list's filters; a value that does not parse is refused by name (400)."""

    kind = forms.ChoiceField(choices=[("", "any"), *ProposalKind.choices], required=False)
    status = forms.ChoiceField(choices=[("", "any"), *ProposalStatus.choices], required=False)
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class ProposalStartForm(forms.Form):
    """The "Propose data" button's fields (``models_registry.proposals.proposal_job_create``)."""

    kind = forms.ChoiceField(choices=ProposalKind.choices)
    variants = forms.IntegerField(required=False, min_value=1, max_value=8)
    limit = forms.IntegerField(required=False, min_value=1, max_value=500)
