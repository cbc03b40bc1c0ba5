"""Everything that changes annotation state. Views, the API and commands call these.

One module per entity: ``projects``, ``members`` (memberships and accounts), ``tasks``,
``claims`` (leases, heartbeats, skips), ``labels`` (submit, edit), ``hashing`` (content
hashes) and ``hooks`` (the extension points other apps register). This package re-exports
their public names, so callers write ``services.label_submit(...)``.

Concurrency model (the part peers get wrong):
- All changes to a task's leases and labels happen while holding that task's row lock
  (``SELECT ... FOR UPDATE``). The invariant ``labels + unexpired active leases <= k`` is
  checked under that lock, so no task ever receives more than ``k`` labels.
- ``task_claim_next`` finds a candidate with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (claimers
  never queue behind each other), then re-checks the counts with fresh statements after the
  lock is held (a READ COMMITTED snapshot taken before the lock can miss a lease that was
  committed just before it). On SQLite, transactions are IMMEDIATE (see settings), which
  serialises writers and makes the same code correct.
- ``label_submit`` is one transaction; the response is sent only after it commits. A unique
  constraint on (task, annotator) backs the check, and an ``Idempotency-Key`` makes retries
  safe: the same key and body return the stored result, the same key with another body is 422.
"""

from annotation.services.claims import (
    lease_heartbeat,
    task_claim_next,
    task_skip,
)
from annotation.services.erasure import ErasureResult, user_erase
from annotation.services.hashing import (
    canonical_json,
    content_hash,
    content_hash_candidates,
    prompt_messages_hash,
    task_content_hash,
    text_hash,
)
from annotation.services.hooks import (
    claim_guards,
    claim_preemptors,
    label_submitted_hooks,
    task_changed_hooks,
)
from annotation.services.invitations import (
    invitation_answer,
    invitation_create,
    invitation_revoke,
    member_add_by_staff,
    member_add_or_invite,
)
from annotation.services.labels import (
    SubmitResult,
    label_edit,
    label_edit_window,
    label_submit,
    task_undo,
)
from annotation.services.members import (
    membership_group_set,
    membership_remove,
    membership_set,
    user_create,
    user_external_get_or_create,
)
from annotation.services.project_settings import (
    project_aggregation_config,
    project_allowed_flags,
    project_flag_policy,
    project_label_edit_window,
    project_reward_feedback,
    project_settings,
    project_settings_update,
)
from annotation.services.projects import EDITABLE_PROJECT_FIELDS, project_create, project_update
from annotation.services.proposals import proposal_decide, proposals_store
from annotation.services.sealing import text_seal, text_unseal
from annotation.services.tasks import task_create
from annotation.services.tokens import (
    IssuedToken,
    api_token_create,
    api_token_revoke,
    api_tokens_revoke_all,
)

__all__ = [
    "EDITABLE_PROJECT_FIELDS",
    "ErasureResult",
    "IssuedToken",
    "SubmitResult",
    "api_token_create",
    "api_token_revoke",
    "api_tokens_revoke_all",
    "canonical_json",
    "claim_guards",
    "claim_preemptors",
    "content_hash",
    "content_hash_candidates",
    "invitation_answer",
    "invitation_create",
    "invitation_revoke",
    "label_edit",
    "label_edit_window",
    "label_submit",
    "label_submitted_hooks",
    "lease_heartbeat",
    "member_add_by_staff",
    "member_add_or_invite",
    "membership_group_set",
    "membership_remove",
    "membership_set",
    "project_aggregation_config",
    "project_allowed_flags",
    "project_create",
    "project_flag_policy",
    "project_label_edit_window",
    "project_reward_feedback",
    "project_settings",
    "project_settings_update",
    "project_update",
    "prompt_messages_hash",
    "proposal_decide",
    "proposals_store",
    "task_changed_hooks",
    "task_claim_next",
    "task_content_hash",
    "task_create",
    "task_skip",
    "task_undo",
    "text_hash",
    "text_seal",
    "text_unseal",
    "user_create",
    "user_erase",
    "user_external_get_or_create",
]
