"""``manage.py quality report|refresh|recompute --project ID_OR_SLUG``."""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.quality import selectors, services
from annotation.selectors import project_by_ref


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value):
    return "-" if value is None else f"{100 * value:.0f}%"


class Command(BaseCommand):
    help = "Label quality: print a project's report, or refresh / rebuild its caches."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["report", "refresh", "recompute"])
        parser.add_argument("--project", required=True, help="project id or slug")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--no-refresh", action="store_true", help="report: skip the refresh before printing"
        )

    def handle(self, *args, action, project, json: bool, no_refresh: bool, **options):
        found = project_by_ref(project)
        if found is None:
            raise CommandError(f"no project {project!r}")
        if action == "recompute":
            result = services.quality_recompute(project_id=found.pk)
            self.stdout.write(f"rebuilt {result.tasks} tasks in {result.seconds:.2f} s")
            return
        if action == "refresh" or not no_refresh:
            result = services.quality_refresh(project_id=found.pk)
            if action == "refresh":
                self.stdout.write(f"applied {result.tasks} changed tasks in {result.seconds:.2f} s")
                return
        report = selectors.quality_report(found)
        if json:
            self.stdout.write(_json_dumps(report))
        else:
            self.stdout.write(render_report(found, report))


def _json_dumps(report) -> str:
    return json.dumps(report, indent=2, default=str)


def render_report(project, report: dict) -> str:
    p = report["progress"]
    lines = [
        f"Quality of {project.name} ({project.slug}), computed {report.get('computed_at')}",
        f"  tasks done {p['tasks_done']} of {p['tasks_total']}, labels {p['labels']}, "
        f"gold tasks {report['gold']['tasks']}, awaiting review {report['review']['pending']}, "
        f"adjudicated {report['review']['adjudicated']}",
    ]
    for kind, k in report["kinds"].items():
        lines.append(f"  {kind}: {k['labels']} labels on {k['tasks']} tasks, "
                     f"median {_fmt(k['durations']['median_seconds'], 1)} s")  # fmt: skip
        agreement = k["agreement"]
        if "outcome" in agreement:
            o, s = agreement["outcome"], agreement["strength"]
            lines.append(
                f"    outcome: alpha (nominal) {_fmt(o['alpha_nominal'])}, Fleiss kappa "
                f"{_fmt(o['fleiss_kappa'])}, agreement {_pct(o['observed_agreement'])} "
                f"over {o['units']} tasks; strength: alpha (ordinal) {_fmt(s['alpha_ordinal'])}"
            )
            dist = ", ".join(f"{key} {n}" for key, n in sorted(k["distribution"].items()))
            lines.append(f"    distribution: {dist}; tie rate {_pct(k.get('tie_rate'))}, "
                         f"both-bad rate {_pct(k.get('both_bad_rate'))}")  # fmt: skip
        for key, a in agreement.items():
            if key.startswith("rubric:"):
                lines.append(f"    {key[7:]}: alpha (interval) {_fmt(a['alpha_interval'])}")
        if kind == "ranking":
            lines.append(f"    Kendall's W (mean over {k['kendall_w_tasks']} tasks) "
                         f"{_fmt(k['kendall_w_mean'])}")  # fmt: skip
    lines.append(f"  Cohen's kappa over {report['cohen_kappa']['pairs']} annotator pairs: "
                 f"mean {_fmt(report['cohen_kappa']['mean'])}")  # fmt: skip
    lines.append(
        "  annotator        labels  consensus  gold      median  fast  skips  left   alerts"
    )
    for a in report["annotators"]:
        gold = f"{_pct(a['gold_accuracy'])}/{a['gold_answered']}" if a["gold_answered"] else "-"
        bias = a["position_bias"]
        left = f"{_pct(bias['share_left'])}" + (
            " p=" + f"{bias['p_value']:.2g}" if bias["flagged"] else ""
        )
        lines.append(
            f"  {a['name'][:16]:<16} {a['labels']:>6}  {_pct(a['consensus_agreement']):>9}  "
            f"{gold:<8}  {_fmt(a['median_seconds'], 1):>5}s  {_pct(a['fast_share']):>4}  "
            f"{_pct(a['skip_rate']):>5}  {left:<6} {', '.join(a['alerts'])}"
        )
    return "\n".join(lines)
