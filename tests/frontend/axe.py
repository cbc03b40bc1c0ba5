"""axe-core in the browser tests: run it on the page a test is on, fail on serious findings.

The script is the vendored copy (frontend/static/vendor/axe-core/axe.min.js), added as a
`<script src>` from the app's own origin, so it runs under the same CSP as the page's own code
(script-src 'self'); an inline copy would be refused, which is the point of the policy.
"""

AXE_URL = "/static/vendor/axe-core/axe.min.js"

# What the checker must report to fail a test. "moderate" and "minor" findings are printed by
# axe_findings() for a reader who asks, but do not fail the walks.
FAILING_IMPACTS = ("serious", "critical")

# WCAG 2.0/2.1 A and AA plus axe's best practices; the same set on every page.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def axe_findings(page) -> list[dict]:
    """Every violation axe reports on the current page: rule id, impact, help and the first
    few offending elements (their CSS selectors and what axe says about each)."""
    page.wait_for_load_state("load")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_URL)
        page.wait_for_function("() => typeof window.axe === 'object'")
    return page.evaluate(
        """async (options) => {
            const result = await window.axe.run(document, options);
            return result.violations.map((v) => ({
                id: v.id,
                impact: v.impact,
                help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => ({
                    target: n.target.join(" "),
                    summary: n.failureSummary,
                })),
                count: v.nodes.length,
            }));
        }""",
        AXE_OPTIONS,
    )


def describe(findings: list[dict]) -> str:
    lines = []
    for f in findings:
        lines.append(f"[{f['impact']}] {f['id']}: {f['help']} ({f['count']} elements)")
        for n in f["nodes"]:
            summary = " ".join((n["summary"] or "").split())
            lines.append(f"    {n['target']}: {summary}")
    return "\n".join(lines)


def assert_no_serious_axe_violations(page, where: str = "") -> None:
    """Run axe on the page the test is on; fail listing every serious or critical violation."""
    serious = [f for f in axe_findings(page) if f["impact"] in FAILING_IMPACTS]
    assert not serious, f"axe on {where or page.url}:\n{describe(serious)}"
