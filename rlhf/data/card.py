"""The data card: a Markdown page that says what a data set is, where it came from, what
was removed and why, and what it cannot be trusted for (after Gebru et al., "Datasheets for
Datasets", 2021, trimmed to what the pipeline knows for certain)."""

from __future__ import annotations

from rlhf.data.audit import audit_markdown
from rlhf.data.records import SHAPES, SPLITS

KNOWN_LIMITATIONS = (
    "Personal-data scrubbing is pattern-based: names, street addresses and identifiers "
    "without a fixed shape (and numbers in unusual formats) are not found.",
    "Near-duplicate detection compares word 3-grams; paraphrases that share few exact word "
    "sequences are not caught, and texts in scripts written without spaces (Chinese, "
    "Japanese, Thai) are compared almost only exactly.",
    "Rubric scores export as mean scores per answer and dimension (`score`) and as pairs "
    "within a task where two answers' means differ (`rubric_preference`); answers to the same "
    "prompt in different tasks are not paired, and no trainer reads these two files yet. "
    "Ties produce no pair.",
    "Annotators flag a task, not a response: the flagged response is taken to be the one the "
    "flagging annotator did not put first (both sides of a tie). The `reject` action and the "
    "flags file rely on that; `drop` does not.",
    "Margins are null where the label kind carries no strength (rankings, corrections); "
    "trainers that need a number must fill them.",
    "The preference `weight` column (agreeing share, Dawid-Skene posterior, gold-weighted "
    "share; 1.0 for an adjudication) weighs each pair's loss in reward-model training "
    "(`use_weights`, on by default); DPO training does not read it yet, so there every kept "
    "row counts the same.",
    "KTO rows come from the preference evidence of each task; a response that is the "
    "middle of a ranking gives no KTO row.",
)


def _augmented_section(augmented: dict | None) -> list[str]:
    """Model-proposed data people confirmed: how much of the data set it is."""
    if augmented is None:
        return []
    rows = augmented["rows"]
    total = sum(rows.values())
    lines = [
        "",
        "## Augmented (model-proposed, person-confirmed) data",
        "",
        f"- Tasks on confirmed prompt variants: {augmented['variant_tasks']:,} (each variant "
        "is split with its source prompt)",
        f"- Confirmed corrections drafted by a model: {augmented['model_corrections']:,}",
        f"- Augmented rows exported: {total:,}",
    ]
    if total:
        lines += [""]
        lines += _table(("shape", "augmented rows"), ((k, v) for k, v in rows.items() if v))
    return lines


def render_data_card(report: dict, *, title: str, sources: list[str] | None = None) -> str:
    """Markdown for a pipeline report (see ``rlhf.data.pipeline.build_dataset``)."""
    agg = report["aggregation"]
    lines = [f"# {title}", ""]
    lines += ["## Sources", ""]
    lines += [f"- {s}" for s in (sources or ["(not recorded)"])]
    lines += [
        "",
        "## Size",
        "",
        f"- Labels read: {report['input']['labels']:,} on {report['input']['tasks']:,} tasks",
        f"- Annotators: {agg['annotators']:,}",
        f"- Aggregation policy: `{agg['policy']}`{_policy_words(report)}",
        "- Label weights: exported as the preference `weight` column; the reward-model trainer"
        " weighs each pair's loss by it (`use_weights`), DPO does not read it",
        f"- Content sha256: `{report.get('content_sha256', '(pending)')}`",
        "",
        "| shape | " + " | ".join(SPLITS) + " | total |",
        "| --- | " + " | ".join("---:" for _ in SPLITS) + " | ---: |",
    ]
    for shape in SHAPES:
        counts = report["splits"][shape]
        total = sum(counts.values())
        lines.append(
            f"| {shape} | " + " | ".join(f"{counts[s]:,}" for s in SPLITS) + f" | {total:,} |"
        )
    lines += _augmented_section(report.get("augmented"))
    lines += _sources_section(report.get("label_sources"))
    lines += _flags_section(report.get("flags"))
    if report.get("sealed_labels_dropped"):
        lines += [
            "",
            f"- Labels left out because their task shows a text a project admin sealed as"
            f" personal data (whatever the flag policy): {report['sealed_labels_dropped']:,}",
        ]
    lines += ["", "## Label distribution", ""]
    lines += _table(("label kind", "labels"), agg["labels_by_kind"].items())
    lines += [""]
    lines += _table(("vote", "count"), agg["votes"].items())
    lines += ["", "Decisions after aggregation:", ""]
    lines += _table(("decision", "count"), agg["decisions"].items())
    adjudications = report.get("adjudications")
    if adjudications is not None:
        lines += [
            "",
            f"Tasks decided by an adjudicator: {adjudications['tasks']:,} (their decision, as "
            "frozen when the snapshot was built, replaces the policy's); comparisons whose "
            f"exported outcome it changed: {adjudications['comparisons_changed']:,}.",
        ]
    agreement = agg["agreement"]
    lines += ["", "## Agreement", ""]
    if agreement["items_with_2plus_labels"]:
        lines += [
            f"- Comparisons with two or more labels: {agreement['items_with_2plus_labels']:,}",
            f"- Percent agreement (pairs of labels that agree): "
            f"{agreement['percent_agreement']:.1%}",
            f"- Fleiss' kappa: {_num(agreement['fleiss_kappa'])}",
        ]
    else:
        lines.append("Not available: no comparison has two or more labels.")
    lines += ["", "## What was removed and why", ""]
    cleaning = report["cleaning"]
    lines += [f"Texts cleaned: {cleaning['texts']:,}.", ""]
    lines += _table(("cleaning step", "texts changed"), cleaning["changed"].items())
    lines += [""]
    lines += _table(("personal data type", "replaced"), cleaning["pii"].items())
    lines += [""]
    lines += _table(("texts dropped", "count"), cleaning["dropped"].items())
    lines += [""]
    rows = [
        (f"{shape}: {reason}", n)
        for shape, reasons in report["removed"].items()
        for reason, n in reasons.items()
    ]
    lines += _table(("rows removed (shape: reason)", "count"), rows)
    if agg["excluded"]:
        lines += [""]
        lines += _table(("labels excluded", "count"), agg["excluded"].items())
    dedup = report["dedup"]
    lsh = dedup["lsh"]
    lines += [
        "",
        "## De-duplication and splits",
        "",
        f"- Near-duplicate threshold: Jaccard >= {lsh['threshold']} over word "
        f"{lsh['shingle_words']}-grams ({lsh['num_perm']} MinHash bins"
        + (f", {lsh['bands']} bands of {lsh['rows_per_band']})" if lsh["bands"] else ")"),
        f"- Near-duplicate pairs found: {dedup['near_dup_pairs_found']:,}; largest prompt "
        f"cluster: {dedup['largest_prompt_cluster']:,}",
        "- Splits are assigned per prompt cluster (near-duplicate prompts together), by a "
        f"seeded hash (seed {report['config']['split']['seed']}).",
        f"- Leakage check: {'passed' if report['leakage']['ok'] else 'FAILED'} "
        f"({report['leakage']['prompts_in_two_splits']} prompts in two splits, "
        f"{report['leakage']['near_duplicate_pairs_across_splits']} near-duplicate pairs "
        "across splits)",
    ]
    lines += _examples_section(report.get("examples"))
    truncation = report.get("truncation") or {}
    truncated = sum((truncation.get("rows_truncated") or {}).values())
    if truncated:
        lines += [f"- Prompts truncated from the left at export: {truncated:,} rows"]
    lines += audit_markdown(report.get("audit"))
    lines += ["", "## Known limitations", ""]
    lines += [f"- {item}" for item in KNOWN_LIMITATIONS]
    return "\n".join(lines) + "\n"


def _sources_section(sources: dict | None) -> list[str]:
    """Annotators' labels apart from served feedback (the model gateway's users, with the
    project's consent) and from imports of external tools."""
    if not sources:
        return []
    lines = ["", "## Label sources", "", f"- Annotators' labels: {sources['annotators']:,}"]
    lines += [
        f"- Served feedback ({name}): {n:,}" for name, n in sources["served_by_source"].items()
    ]
    lines.append(f"- Imported (external annotators): {sources['imported']:,}")
    return lines


def _flags_section(flags: dict | None) -> list[str]:
    if flags is None:
        return []
    policy = flags["policy"]
    lines = [
        "",
        "## Flags",
        "",
        f"- Policy: a flag counts once at least {policy['min_flags']} label(s) of a task carry"
        f" it; unsafe: `{policy['unsafe']}`, personal data: `{policy['personal_data']}`,"
        f" spam: `{policy['spam']}`, other flags: `{policy['other']}`"
        " (see docs/data-pipeline.md).",
        f"- Flagged texts exported as the `flags` shape: {flags['flag_rows']:,} rows (text,"
        " flag, labels that attributed it, agreement).",
        f"- Texts sent through the personal-data scrubber by a flag and changed:"
        f" {flags['texts_scrubbed']:,}",
    ]
    below = flags["flagged_below_minimum"]
    if below:
        lines.append(
            "- Tasks with a flag below the minimum (left as they were): "
            + ", ".join(f"{flag} {n:,}" for flag, n in below.items())
        )
    names = sorted(set(flags["tasks_flagged"]) | set(flags["rows_removed"]))
    if not names:
        return [*lines, "", "No task reached the flag minimum."]
    lines += ["", "| flag | tasks | rows removed | rows changed |", "| --- | ---: | --- | --- |"]
    for flag in names:
        lines.append(
            f"| {flag} | {flags['tasks_flagged'].get(flag, 0):,} | "
            f"{_shape_counts(flags['rows_removed'].get(flag))} | "
            f"{_shape_counts(flags['rows_changed'].get(flag))} |"
        )
    return lines


# What each example key of the report stands for, in the card's words.
_EXAMPLE_WORDS = {
    "adjudicated": "adjudicated, the policy agreeing",
    "adjudication_changed": "adjudication changed the exported outcome",
    "changed:flag_unsafe": "flagged unsafe: pair turned round (reject)",
    "removed:flag_unsafe": "flagged unsafe: rows removed",
    "flag_personal_data_scrubbed": "flagged personal data: sent through the scrubber",
    "pii_replaced": "personal data replaced by the cleaner",
    "duplicate_rows": "exact or near duplicates removed",
}


def _policy_words(report: dict) -> str:
    aggregation = (report.get("config") or {}).get("aggregation") or {}
    if aggregation.get("policy") == "gold_weighted":
        weighed = len(aggregation.get("gold_accuracy") or [])
        return f" (votes weighed by the gold accuracy of {weighed:,} annotators)"
    return ""


def _examples_section(examples: dict | None) -> list[str]:
    """Links to a few tasks behind each decision, on the reviewer's task page."""
    if not examples:
        return []
    lines = ["", "## Links to examples", ""]
    for decision, task_ids in examples.items():
        if decision.startswith("removed:"):
            words = _EXAMPLE_WORDS.get(
                decision, f"rows removed: {decision.removeprefix('removed:')}"
            )
        else:
            words = _EXAMPLE_WORDS.get(decision, decision)
        links = ", ".join(f"[task {t}](/tasks/{t}/review/)" for t in task_ids)
        lines.append(f"- {words}: {links}")
    return lines


def _shape_counts(counts: dict | None) -> str:
    return ", ".join(f"{shape} {n:,}" for shape, n in counts.items()) if counts else "none"


def _table(header: tuple[str, str], rows) -> list[str]:
    rows = list(rows)
    if not rows:
        return [f"No {header[0]}."]
    out = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
    out += [f"| {k} | {v:,} |" for k, v in rows]
    return out


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
