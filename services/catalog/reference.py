"""The default failure-mode taxonomy (version 1) and severity rubric, seeded by migration 0002."""

from __future__ import annotations

# (code, title, description); a sub-mode's code is "<parent>.<sub>".
DEFAULT_TAXONOMY: list[tuple[str, str, str]] = [
    ("data_quality", "Data quality", "Inputs are wrong, incomplete or malformed."),
    ("data_quality.missing_values", "Missing values", "Required features absent or null."),
    ("data_quality.corrupted_input", "Corrupted input", "Input bytes or encodings are damaged."),
    ("data_quality.schema_violation", "Schema violation", "Input does not match its schema."),
    ("data_quality.duplicate_records", "Duplicate records", "The same event arrives twice."),
    ("distribution_shift", "Distribution shift", "Live data differs from training data."),
    ("distribution_shift.covariate_shift", "Covariate shift", "Feature distribution moved."),
    ("distribution_shift.label_shift", "Label shift", "Class priors moved."),
    ("distribution_shift.concept_drift", "Concept drift", "The input-label relation changed."),
    ("distribution_shift.new_category", "Unseen category", "A value never seen in training."),
    ("label_noise", "Label noise", "Training or reference labels are wrong."),
    ("label_noise.mislabeled_target", "Mislabeled target", "The expected label is wrong."),
    ("label_noise.ambiguous_label", "Ambiguous label", "Annotators cannot agree on a label."),
    ("label_noise.annotation_guideline_gap", "Guideline gap", "Guidelines do not cover it."),
    ("adversarial_input", "Adversarial input", "Inputs crafted to make the model fail."),
    ("adversarial_input.evasion", "Evasion", "Perturbations flip the prediction."),
    ("adversarial_input.prompt_injection", "Prompt injection", "Instructions smuggled in input."),
    ("adversarial_input.jailbreak", "Jailbreak", "Safety behaviour bypassed by the prompt."),
    ("adversarial_input.data_poisoning", "Data poisoning", "Training data was tampered with."),
    ("adversarial_input.model_extraction", "Model extraction", "Queries reconstruct the model."),
    ("robustness", "Robustness to noise", "Small natural perturbations change the output."),
    ("robustness.input_noise", "Input noise", "Sensor or typing noise breaks the prediction."),
    ("robustness.formatting_variation", "Formatting variation", "Equivalent formats differ."),
    ("robustness.out_of_distribution", "Out of distribution", "Input far from any training."),
    ("fairness", "Fairness / bias", "Outcomes differ unjustly across groups."),
    ("fairness.disparate_performance", "Disparate performance", "Error rates differ by group."),
    ("fairness.stereotyping", "Stereotyping", "Output reproduces stereotypes."),
    ("fairness.representation_gap", "Representation gap", "A group is under-represented."),
    ("safety", "Safety / policy violation", "Output breaks a safety or content policy."),
    ("safety.harmful_content", "Harmful content", "Toxic, violent or dangerous output."),
    ("safety.privacy_leak", "Privacy leak", "Personal or confidential data disclosed."),
    ("safety.hallucination", "Hallucination", "Confident output not grounded in facts."),
    ("safety.policy_violation", "Policy violation", "Breaks a stated product policy."),
    ("latency", "Latency / resource", "Too slow or too costly to serve."),
    ("latency.timeout", "Timeout", "The request exceeded its deadline."),
    ("latency.memory_exhaustion", "Memory exhaustion", "Out of memory while serving."),
    ("latency.throughput_degradation", "Throughput degradation", "Capacity dropped."),
    ("integration", "Integration / pipeline error", "The system around the model failed."),
    ("integration.feature_pipeline", "Feature pipeline", "Features computed wrongly."),
    (
        "integration.training_serving_skew",
        "Training-serving skew",
        "Serving differs from training.",
    ),
    ("integration.version_mismatch", "Version mismatch", "Wrong model or artifact deployed."),
    ("integration.upstream_outage", "Upstream outage", "A dependency was unavailable."),
]

# (grade, rank, title, criteria); rank 0 is the worst.
DEFAULT_RUBRIC: list[tuple[str, int, str, str]] = [
    (
        "S0",
        0,
        "Critical",
        "Harm to people, legal or safety exposure, or a systemic outage of a production model; "
        "affects many users or all traffic of a product. Stop the line: page on-call now.",
    ),
    (
        "S1",
        1,
        "Major",
        "Material financial, reputational or user harm for a significant segment, or a protected "
        "group treated unfairly; no acceptable workaround. Fix before the next release.",
    ),
    (
        "S2",
        2,
        "Moderate",
        "Wrong outcomes for a limited segment with a workaround, or quality clearly below the "
        "model's stated targets. Schedule a fix within the current cycle.",
    ),
    (
        "S3",
        3,
        "Minor",
        "Isolated wrong outputs with low impact, or degraded confidence/latency within "
        "tolerances. Track and batch into retraining.",
    ),
    (
        "S4",
        4,
        "Cosmetic",
        "No user impact: a curiosity, a near miss or a documentation gap. Record for learning.",
    ),
]
