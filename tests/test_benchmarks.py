"""The benchmark helpers that decide what counts as a hit (benchmarks/common.py), on the real QA files."""

from __future__ import annotations

from benchmarks.answers import apply_gate
from benchmarks.common import gold_groups, load_jsonl, rank_metrics, verified_pages, with_verified

ORANGE = "cfb_orange_2023_integrated_annual_report.pdf"
TRAJECTORY = "Does the company have a decarbonization trajectory compatible with a 1.5 or 2 degree scenario?"


def test_verified_pages_add_the_other_evidence_extracts_pages(testdata):
    qa = testdata / "qa"
    groups = gold_groups(load_jsonl(qa / "esg_qa_en.jsonl"))
    verified = with_verified(groups, verified_pages(qa))
    # The combined file keeps the first extract's page; the source file verified all three extracts' pages.
    assert groups[(ORANGE, TRAJECTORY)] == {17}
    assert verified[(ORANGE, TRAJECTORY)] == {17, 33, 43}
    assert verified.keys() == groups.keys()
    assert all(groups[k] <= verified[k] for k in groups)
    # ClimRetrieve rows carry no extract list: their gold is unchanged.
    assert all(verified[k] == groups[k] for k in groups if k[0].startswith("climretrieve_"))
    assert sum(verified[k] != groups[k] for k in groups) >= 5


def test_rank_metrics_count_a_multi_page_passage_once():
    ranked = [[{4, 5}, {9}], [{1}, {2}, {3}, {4}, {5}, {6}], [{7}]]
    gold = [{5}, {6}, {8}]
    m = rank_metrics(ranked, gold)
    assert abs(m["hit@1"] - 1 / 3) < 1e-3
    assert abs(m["hit@5"] - 1 / 3) < 1e-3  # the second query's gold is at rank 6
    assert abs(m["hit@10"] - 2 / 3) < 1e-3
    assert abs(m["mrr"] - (1 + 1 / 6) / 3) < 1e-3


def test_apply_gate_turns_answers_below_the_threshold_into_gate_refusals():
    answered = {
        "id": "q",
        "answer": "Yes [1].",
        "refused": False,
        "reason": None,
        "cited_pages": [[3]],
        "passages": ["x"],
        "ttft_s": 9.0,
        "llm_called": True,
        "prompt_tokens": 900,
        "answer_tokens": 4,
        "gate_p": 0.45,
    }
    low = apply_gate(answered, 0.5)
    assert low["refused"] and not low["llm_called"] and low["cited_pages"] == [] and low["ttft_s"] is None
    assert "don't answer" in low["answer"]
    assert apply_gate(answered, 0.4) == answered  # above the threshold: the stored answer stands
    ungated = answered | {"gate_p": None}  # the gate did not run (e.g. a model without a calibrated gate)
    assert apply_gate(ungated, 0.9) == ungated


def test_a_perturbed_gold_answer_changes_one_figure_written_the_same_way():
    from benchmarks.ground_gold import perturbed

    assert perturbed("2.8 billion m3 in 2023") == "3.8 billion m3 in 2023"  # years are left alone
    assert perturbed("1,069 kilotons, or +4%") == "1,465 kilotons, or +4%"
    assert perturbed("约占37.4%") == "约占51.2%"
    assert perturbed("In 2023, yes") is None


def test_verified_questions_keep_their_split():
    from benchmarks.common import verified_questions

    dev, test = verified_questions("dev"), verified_questions("test")
    assert dev and test and {r["split"] for r in dev} == {"dev"} and {r["split"] for r in test} == {"test"}
    assert len(verified_questions()) == len(dev) + len(test)
