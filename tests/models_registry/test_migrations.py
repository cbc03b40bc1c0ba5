"""The migrations that turn the registry's integer references into foreign keys keep the data."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("models_registry", "0004_run_and_snapshot_foreign_keys"), ("rlhf", "0002_training_runs")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_links_are_carried_over_and_refs_to_nothing_or_another_project_are_dropped():
    # given the schema before the move, with versions whose integer refs name a run and a
    # snapshot of their project, nothing, or another project's, and runs linked to versions
    old = _migrate(BEFORE)
    User = old.get_model("auth", "User")
    Project = old.get_model("annotation", "Project")
    Snapshot = old.get_model("rlhf", "DatasetSnapshot")
    Run = old.get_model("rlhf", "TrainingRun")
    Version = old.get_model("models_registry", "ModelVersion")
    user = User.objects.create(username="eve")
    own, other = (Project.objects.create(name=n, slug=n, created_by=user) for n in ("own", "other"))

    def snapshot_and_run(project):
        snapshot = Snapshot.objects.create(project=project, max_label_id=0, config={})
        run = Run.objects.create(
            project=project, method="dpo", method_title="DPO", config={},
            dataset_snapshot=snapshot, data_path="/nowhere",
        )  # fmt: skip
        return snapshot, run

    snapshot, run = snapshot_and_run(own)
    foreign_snapshot, foreign_run = snapshot_and_run(other)

    def version(name, **refs):
        return Version.objects.create(
            project=own, name=name, version=1, kind="policy", architecture="LlamaForCausalLM",
            backbone="llama", source="folder", artifact_dir="/nowhere", **refs,
        )  # fmt: skip

    base = version("base")
    linked = version("linked", training_run_ref=run.pk, dataset_snapshot_ref=snapshot.pk)
    dangling = version("dangling", training_run_ref=10**9, dataset_snapshot_ref=10**9)
    foreign = version(
        "foreign", training_run_ref=foreign_run.pk, dataset_snapshot_ref=foreign_snapshot.pk
    )
    Run.objects.filter(pk=run.pk).update(
        base_model_version=base, reward_model_version=None, candidate_version=linked
    )

    # when the migrations run forward
    new = _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    # then the version's run and snapshot are foreign keys to the same rows, dangling and
    # foreign refs are dropped, and the run's versions are the registry's record
    Version = new.get_model("models_registry", "ModelVersion")
    Links = new.get_model("models_registry", "TrainingRunVersions")
    refs = dict(
        (v.pk, (v.training_run_id, v.dataset_snapshot_id))
        for v in Version.objects.filter(pk__in=[base.pk, linked.pk, dangling.pk, foreign.pk])
    )
    assert refs == {
        base.pk: (None, None),
        linked.pk: (run.pk, snapshot.pk),
        dangling.pk: (None, None),
        foreign.pk: (None, None),
    }
    assert list(
        Links.objects.values_list(
            "run_id", "base_model_version_id", "reward_model_version_id", "candidate_version_id"
        )
    ) == [(run.pk, base.pk, None, linked.pk)]
    assert Links.objects.count() == 1  # the foreign project's run had no versions


@pytest.mark.django_db(transaction=True)
def test_jobs_still_queued_under_a_moved_path_find_their_function_again():
    # given a queued and a finished job under paths from before the move
    from django.utils import timezone
    from django.utils.module_loading import import_string

    old = _migrate(
        [
            ("models_registry", "0006_drop_integer_refs"),
            ("django_tasks_database", "0021_conditional_partial_index_ordering"),
        ]
    )
    Job = old.get_model("django_tasks_database", "DBTaskResult")

    def job(path, status):
        return Job.objects.create(
            task_path=path, status=status, args_kwargs={"args": [], "kwargs": {}},
            backend_name="default", run_after=timezone.now(), exception_class_path="",
            traceback="",
        )  # fmt: skip

    queued = job("rlhf.tasks.training_run_job", "READY")
    generating = job("models_registry.tasks.generate_responses_for_job", "READY")
    finished = job("rlhf.tasks.snapshot_build_job", "SUCCESSFUL")

    # when the migrations run forward
    new = _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    # then the queued ones name a function that exists; the finished one keeps its history
    paths = dict(
        new.get_model("django_tasks_database", "DBTaskResult").objects.values_list(
            "id", "task_path"
        )
    )
    assert paths == {
        queued.pk: "rlhf.runs.tasks.training_run_job",
        generating.pk: "models_registry.tasks.generation_job_run_job",
        finished.pk: "rlhf.tasks.snapshot_build_job",
    }
    for path in (paths[queued.pk], paths[generating.pk]):
        import_string(path)
