"""Write-up templates per failure-mode family: the sections a good write-up of that kind has.

Offered when a case is curated (REST and GraphQL serve them by failure mode) so that write-ups
of the same kind answer the same questions and can be compared. Each template fills the
case's `summary` outline and the four `writeup` fields; the prompts are questions, not text
to keep.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import NotFound

WRITEUP_FIELDS = ("hypothesis", "experiments", "results", "rationale")


@dataclass(frozen=True, slots=True)
class Template:
    family: str
    title: str
    summary_outline: tuple[str, ...]  # markdown headings for the summary
    prompts: dict[str, str]  # writeup field -> the question it answers
    evidence: tuple[str, ...]  # link kinds and data a reviewer expects to see

    def as_markdown(self) -> dict[str, str]:
        """The template as the text a curator starts from, field by field."""
        summary = "\n\n".join(f"## {h}\n\n" for h in self.summary_outline).rstrip() + "\n"
        out = {"summary": summary}
        out.update({name: f"<!-- {self.prompts[name]} -->\n" for name in WRITEUP_FIELDS})
        return out


def _t(family: str, title: str, outline: tuple[str, ...], evidence: tuple[str, ...], **p: str):
    return Template(family, title, outline, {k: p[k] for k in WRITEUP_FIELDS}, evidence)


TEMPLATES: dict[str, Template] = {
    t.family: t
    for t in (
        _t(
            "data_quality",
            "Data quality failure",
            ("What arrived", "Which records", "Upstream owner"),
            ("dataset", "ticket"),
            hypothesis="Which field or source is wrong, and since when?",
            experiments="Which validation or schema checks were run on the affected batch?",
            results="How many records were affected, and what did the model do with them?",
            rationale="Fix upstream, add a validation gate, or make the model tolerant? Why?",
        ),
        _t(
            "distribution_shift",
            "Distribution shift",
            ("Shift observed", "Affected slices", "Drift signals"),
            ("dataset", "experiment"),
            hypothesis="Which features or priors moved, between which windows or versions?",
            experiments="Which drift statistics and slice evaluations were compared?",
            results="How large is the shift, and how much accuracy did each slice lose?",
            rationale="Retrain, reweight, recalibrate or wait? What evidence decides it?",
        ),
        _t(
            "label_noise",
            "Label noise",
            ("Disputed labels", "Guideline text", "Annotator agreement"),
            ("dataset", "ticket"),
            hypothesis="Is the reference label wrong, ambiguous, or uncovered by guidelines?",
            experiments="How many annotators relabelled the sample, with what agreement?",
            results="What share of labels changed, and how does the metric move on the fix?",
            rationale="Relabel, change the guideline, or drop the examples? Why?",
        ),
        _t(
            "adversarial_input",
            "Adversarial input",
            ("Attack observed", "Attack surface", "Exposure"),
            ("ticket", "counterfactual"),
            hypothesis="What did the attacker control, and which behaviour did they reach?",
            experiments="Which variants of the attack were replayed, and against which versions?",
            results="What share of variants succeed, and what could an attacker gain?",
            rationale="Filter inputs, harden the model, or limit the capability? Why?",
        ),
        _t(
            "robustness",
            "Robustness to noise",
            ("Perturbation", "Affected inputs", "Tolerance expected"),
            ("experiment", "counterfactual"),
            hypothesis="Which natural perturbation flips the output, and how small can it be?",
            experiments="Which perturbation sweeps or counterfactual pairs were run?",
            results="At what perturbation size does the output change, on how many inputs?",
            rationale="Augment training, normalise inputs, or accept the limit? Why?",
        ),
        _t(
            "fairness",
            "Fairness or bias",
            ("Groups affected", "Metric gap", "Stakeholders informed"),
            ("experiment", "dataset"),
            hypothesis="Which groups are treated differently, and through which features?",
            experiments="Which disaggregated metrics were computed, on what sample sizes?",
            results="How large is each gap, with confidence intervals?",
            rationale="Which mitigation was chosen, and what trade-off does it accept?",
        ),
        _t(
            "safety",
            "Safety or policy violation",
            ("Output and policy", "Who saw it", "Containment"),
            ("ticket", "experiment"),
            hypothesis="Which policy was broken, and what in the input or model led there?",
            experiments="Which red-team prompts or replays reproduced it, on which versions?",
            results="How often does it recur, and how severe is the worst output?",
            rationale="Block, filter, retrain or pause the release? Why?",
        ),
        _t(
            "latency",
            "Latency or resource failure",
            ("Budget and observed", "Load at the time", "Users affected"),
            ("ticket", "experiment"),
            hypothesis="Which stage used the time or memory, under which load?",
            experiments="Which profiles or load tests were run, on which hardware?",
            results="p50/p99 before and after, and the resource ceiling found",
            rationale="Optimise, scale, shed load or change the model? Why?",
        ),
        _t(
            "integration",
            "Integration or pipeline error",
            ("What broke around the model", "Versions involved", "Blast radius"),
            ("ticket", "dataset"),
            hypothesis="Which component or version mismatch produced the wrong input or output?",
            experiments="Which serving and training paths were compared on the same input?",
            results="Where do the two paths diverge, and on how much traffic?",
            rationale="Which fix and which check keep it from recurring?",
        ),
    )
}


def template_for(failure_mode: str) -> Template:
    """The template of a failure mode's family (`safety.hallucination` -> `safety`)."""
    family = failure_mode.split(".", 1)[0]
    try:
        return TEMPLATES[family]
    except KeyError:
        raise NotFound(
            f"no write-up template for '{failure_mode}': families are {', '.join(TEMPLATES)}"
        ) from None
