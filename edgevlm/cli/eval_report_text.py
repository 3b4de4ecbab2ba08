"""``edgevlm eval`` reports as the text a person reads: one function per kind of report, each
taking the report dict that ``--json`` prints and returning the lines joined by newlines
(no trailing newline). Labels are right-aligned so the figures line up in a column."""

from __future__ import annotations

METRIC_ORDER = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "mean_length", "distinct_words",
                "images")
POPE_HEADLINE = (("macro balanced accuracy", "macro_balanced_accuracy"), ("accuracy", "accuracy"),
                 ("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("yes ratio", "yes_ratio"))


def caption_text(scores: dict) -> str:
    """Caption metrics, then CHAIR hallucination, repeated words and self-consistency."""
    lines = []
    for key in METRIC_ORDER + ("beam", "seconds"):
        if key in scores:
            value = scores[key]
            lines.append(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}")
    return "\n".join(lines + _hallucination_lines(scores))


def _hallucination_lines(scores: dict) -> list[str]:
    c, r = scores["chair"], scores["repeated_words"]
    lines = [f"{'CHAIR-i':>15}: {c['chair_i']:.4f}  ({c['mentions_hallucinated']} of {c['mentions']} object "
             f"mentions hallucinated, {c['mentions_open']} left open by the references)",
             f"{'CHAIR-s':>15}: {c['chair_s']:.4f}  ({c['captions_hallucinated']} of {c['captions']} captions)",
             f"{'person/dog':>15}: {c['person_dog_hallucination_rate']:.4f}  ({c['person_dog_hallucinated']} of "
             f"{c['person_dog_captions']} captions naming a person or dog invent it)"]
    worst = ", ".join(f"{k} {v}" for k, v in list(c["hallucinated_by_category"].items())[:5])
    if worst:
        lines.append(f"{'most invented':>15}: {worst}")
    lines.append(f"{'repeated words':>15}: {r['rate']:.4f}  ({r['repeated']} of {r['captions']} captions)")
    k = scores["consistency"]
    if k is None:
        return lines + [f"{'consistency':>15}: skipped (--no-consistency)"]
    return lines + [f"{'consistency':>15}: {k['consistency']:.4f}  (\"yes\" to {k['yes']} of {k['questions']} "
                    f"\"is there ...?\" questions about objects the captions name)",
                    f"{'answered':>15}: {k['answered_consistency']:.4f}  (abstention rate {k['abstention_rate']:.4f})",
                    f"{'asking took':>15}: {scores['consistency_seconds']} s"]


def ood_text(report: dict) -> str:
    """Novelty AUROC, hedging rates, confident person/dog claims per group, examples."""
    lines = [f"{report['ood_images']} out-of-domain images from {report['ood_dir']}, {report['dev_photos']} dev "
             f"photos; engine {report['source']}"]
    n = report["novelty"]
    if not n["available"]:
        lines.append(f"{'novelty AUROC':>24}: {n['note']} (this engine has no novelty score)")
    else:
        lines.append(f"{'novelty AUROC':>24}: {_maybe(n['auroc'])}  (median score OOD {_maybe(n['ood_median'])}, "
                     f"dev {_maybe(n['dev_median'])})")
        lines += [f"{group + ' AUROC':>24}: {_maybe(value)}" for group, value in n["auroc_by_group"].items()]
    h = report["hedging"]
    limit = f"novelty above {h['unfamiliar_above']:g}" if h["unfamiliar_above"] > 0 else "never (no threshold)"
    lines += [f"{'hedges when':>24}: {limit}",
              f"{'dev photos hedged':>24}: {h['dev_false_alarm_rate']:.4f}  (false alarms)",
              f"{'OOD images hedged':>24}: {h['ood_hedged_rate']:.4f}",
              "\nconfident person/dog claims (named, not hedged, not a frame message):"]
    claims = report["confident_claims"]
    rows = [("OOD, all", claims["ood"])] + [(f"OOD, {g}", c) for g, c in claims["ood"]["by_group"].items()]
    for label, c in rows + [("dev photos (reference)", claims["dev"])]:
        lines.append(f"{label:>24}: {c['confident_claim_rate']:.4f}  ({c['confident_claims']} of {c['images']}; "
                     f"hedged {c['hedged']}, frame issues {c['frame_issues']})")
    lines += ood_questions_text(report["questions"])
    if report["examples"]:
        lines.append("\nexamples (confident claims first):")
        for e in report["examples"]:
            mark = "!" if e["confident_claim"] else " "
            lines.append(f" {mark} {e['group']:<10} {e['file']}: {e['text']}")
    return "\n".join(lines + [f"\n{'seconds':>24}: {report['seconds']}"])


def ood_questions_text(q: dict) -> list[str]:
    """The OOD person/dog questions' lines: wrong answers said (and said as sure) per question."""
    if not q["available"]:
        return [f"\nquestions about people and dogs: skipped ({q['note']})"]
    lines = [f"\nquestions about people and dogs (none is there; wrong = anything but no/none/0 said, sure = p >= "
             f"{q['sure_above']:g}):"]
    for label, c in [("all", q)] + list(q["by_question"].items()) + [(f"OOD, {g}", c) for g, c in q["by_group"].items()]:
        lines.append(f"{label:>28}: wrong {c['said_wrong_rate']:.4f} ({c['said_wrong']} of {c['questions']}), sure and "
                     f"wrong {c['said_wrong_sure']}, not sure {c['not_sure']}, frame messages {c['frame_messages']}")
    lines += [f"   {e['file']}: {e['question']} -> {e['answer']} (p {e['probability']:.2f})" for e in q["examples"]]
    return lines


def _maybe(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def vqa_text(report: dict, tuned: bool) -> str:
    """Accuracy overall and per type beside the prior-only baseline, then abstention;
    ``tuned``: the threshold was chosen on this file and written to the engine."""
    prior, a = report["prior"], report["with_abstention"]
    lines = [f"{'questions':>24}: {report['questions']}",
             f"{'accuracy':>24}: {report['accuracy']:.4f}  prior-only {prior['accuracy']:.4f}  "
             f"margin {prior['margin']:+.4f}"]
    lines += [f"{kind + ' accuracy':>24}: {value:.4f}  ({report['count_by_type'][kind]} questions)  "
              f"prior-only {prior['by_type'][kind]:.4f}  margin {prior['margin_by_type'][kind]:+.4f}"
              for kind, value in report["by_type"].items()]
    split, prior_split = report["number_split"], prior["number_split"]
    if split["questions"]["count"] and split["questions"]["none"]:
        # Counting and seeing that nothing is there are different skills: each beside the guesser.
        lines += [f"{label:>24}: {split[kind]:.4f}  ({split['questions'][kind]} questions)  "
                  f"prior-only {prior_split[kind]:.4f}  margin {split[kind] - prior_split[kind]:+.4f}"
                  for kind, label in (("count", "number, to count"), ("none", "number, none there"))]
    lines += [f"{'yes/no balanced accuracy':>24}: {report['yesno_balanced_accuracy']:.4f}  "
              f"prior-only {prior['yesno_balanced_accuracy']:.4f}",
              f"{'abstention rate':>24}: {report['abstention_rate']:.4f}  (below p={a['threshold']:.3f}"
              f"{', tuned here (' + report['abstention_rule'] + ') and written to the engine' if tuned else ''})",
              f"{'answered accuracy':>24}: {a['answered_accuracy']:.4f}  (coverage {a['coverage']:.4f})",
              *(calibration_line(f"calibration, {source}", c) for source, c in report["calibration"].items()),
              f"{'prior-only source':>24}: {prior['source']} (question text seen for "
              f"{prior['question_text_seen']:.1%}; else the type's most frequent answer)",
              f"{'seconds':>24}: {report['seconds']}"]
    return "\n".join(lines)


def calibration_line(label: str, c: dict) -> str:
    """One line of metrics/calibration.py's figures: does an answer's probability mean what it says?"""
    return (f"{label:>24}: ECE {c['ece']:.4f}, Brier {c['brier']:.4f} ({c['questions']} answers, mean p "
            f"{c['mean_probability']:.3f}, right {c['accuracy']:.3f}); p >= {c['sure_above']:g}: {c['sure_share']:.1%} "
            f"of answers, {_maybe(c['sure_accuracy'])} right, wrong on {c['sure_wrong_rate']:.2%} of questions")


def pope_text(report: dict) -> str:
    """Per sampling the headline figures beside the prior-only guesser, then one table per
    category and one per wording, a column group per sampling."""
    samplings = report["samplings"]
    lines = [f"{report['questions']} questions from {report['source']}; \"yes\" means the answer is exactly "
             "\"yes\", anything else counts as \"no\""]
    for sampling, s in samplings.items():
        lines.append(f"\n{sampling} sampling: {s['questions']} questions, {s['categories']} categories")
        lines += [f"{label:>24}: {s[key]:.4f}  prior-only {s['prior_only'][key]:.4f}" for label, key in POPE_HEADLINE]
        worst = s["min_category"]
        lines += [f"{'abstention rate':>24}: {s['abstention_rate']:.4f}  (below p={report['threshold']:.3f}; "
                  f"answered accuracy {s['answered_accuracy']:.4f})",
                  calibration_line("calibration", s["calibration"]),
                  f"{'worst category':>24}: {worst['category']} {worst['balanced_accuracy']:.4f} "
                  f"(95% interval {worst['ci95'][0]:.2f}-{worst['ci95'][1]:.2f})"]
    head = "".join(f"  {name[:11]:>11} {'yes':>5} {'n':>4}" for name in samplings)
    ci_head = "".join(f"  {name[:11]:>11} {'95% int.':>10} {'n':>4}" for name in samplings)
    lines.append(f"\nper category: balanced accuracy, its 95% interval, questions\n{'category':<14}{ci_head}")
    for category in sorted({c for s in samplings.values() for c in s["per_category"]}):
        lines.append(f"{category:<14}" + "".join(_interval_cell(s["per_category"].get(category)) for s in samplings.values()))
    lines.append(f"\nper wording: balanced accuracy, yes ratio, questions (* = never trained)\n{'wording':<34}{head}")
    wordings = {w: row["trained"] for s in samplings.values() for w, row in s["per_wording"].items()}
    for wording, trained in wordings.items():
        lines.append(f"{('' if trained else '* ') + wording:<34}"
                     + "".join(_cell(s["per_wording"].get(wording)) for s in samplings.values()))
    if "stability" in report:
        st = report["stability"]
        lines.append(f"\nshifted by {st['shift_pixels']} pixel: the spoken answer (yes / no / not sure) stays the same "
                     f"for {st['same_answer']:.4f} of {st['questions']} questions, flips between yes and no for "
                     f"{st['yes_no_flips']:.4f}")
        lines += [f"{name:>24}: same {row['same_answer']:.4f}, yes/no flips {row['yes_no_flips']:.4f}"
                  for name, row in st["by_sampling"].items()]
    if "abstention_rule" in report:
        lines.append(f"\nthreshold p={report['threshold']:.3f} tuned here ({report['abstention_rule']}) and written to "
                     "the engine")
    return "\n".join(lines + [f"\n{'seconds':>24}: {report['seconds']}"])


def _interval_cell(row: dict | None) -> str:
    """One sampling's column group in the per-category table: balanced accuracy, interval, n."""
    if row is None:
        return f"  {'-':>11} {'-':>10} {'-':>4}"
    lo, hi = row["ci95"]
    return f"  {row['balanced_accuracy']:>11.4f} {f'{lo:.2f}-{hi:.2f}':>10} {row['n']:>4}"


def _cell(row: dict | None) -> str:
    """One sampling's column group in a POPE table row: balanced accuracy, yes ratio, n."""
    if row is None:  # popular sampling asks about the frequent half of the categories only
        return f"  {'-':>11} {'-':>5} {'-':>4}"
    return f"  {row['balanced_accuracy']:>11.4f} {row['yes_ratio']:>5.2f} {row['n']:>4}"
