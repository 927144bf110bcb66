"""signfuse.metrics against numbers computed by hand (the computation is in the comments)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from rouge import Rouge
from sacrebleu.metrics import BLEU

from signfuse import metrics as M
from signfuse.config import DATASETS, TASKS
from signfuse.errors import InputError

REL = 1e-12


# ----------------------------------------------------------------------------- post-processing

def test_csl_daily_prediction_is_split_into_characters():
    # mT5 decodes with stray spaces and ASCII punctuation; all spaces and newlines go,
    # then one space between characters. '。' is a character like any other.
    text = "他 今年\n四岁 , 今天 星期几?"
    assert M.postprocess_prediction(text, "CSL_Daily") == "他 今 年 四 岁 , 今 天 星 期 几 ?"


def test_csl_daily_reference_gets_ascii_comma_and_question_mark():
    # '，' -> ',' and '？' -> '?'; other full-width marks ('。', '！') stay as they are (Uni-Sign).
    text = "你好，今天 星期几？我很好！"
    assert M.postprocess_reference(text, "CSL_Daily") == "你 好 , 今 天 星 期 几 ? 我 很 好 ！"


def test_only_chinese_slt_is_character_level():
    # as Uni-Sign: CSL-Daily (fine-tuning) and CSL-News (pre-training's evaluation) are split into characters
    assert M.postprocess_prediction("新闻 报道\n", "CSL_News") == "新 闻 报 道"
    assert M.postprocess_reference("新闻，报道？", "CSL_News") == "新 闻 , 报 道 ?"
    assert M.postprocess_prediction("news report", "YouTube_ASL") == "news report"
    # CSLR targets are glosses joined by spaces: scored as they are, never split into characters
    assert M.postprocess_prediction(" 你好 今天 ", "CSL_Daily", task="CSLR") == " 你好 今天 "
    assert M.postprocess_reference("你好 今天，", "CSL_Daily", task="CSLR") == "你好 今天，"


def test_other_datasets_are_scored_as_they_are():
    # Uni-Sign scores its in-memory strings unchanged: not even stripped
    assert M.postprocess_prediction("  Hello,  world?\n", "How2Sign") == "  Hello,  world?\n"
    assert M.postprocess_reference("\tHello，world？ ", "WLASL") == "\tHello，world？ "
    assert M.postprocess_reference("he went home. ", "OpenASL") == "he went home. "


def test_unknown_dataset_or_task_is_refused():
    with pytest.raises(ValueError, match="CSL-Daily"):
        M.postprocess_prediction("x", "CSL-Daily")
    with pytest.raises(ValueError, match="SLR"):
        M.postprocess_reference("x", "CSL_Daily", task="SLR")


@settings(max_examples=100, deadline=None)
@given(text=st.text(), dataset=st.sampled_from(DATASETS), task=st.sampled_from(TASKS))
def test_postprocessing_is_idempotent(text, dataset, task):
    # `signfuse score` applies it again to files already written in post-processed form
    for post in (M.postprocess_prediction, M.postprocess_reference):
        once = post(text, dataset, task)
        assert post(once, dataset, task) == once


# ----------------------------------------------------------------------------- BLEU

# hyp 1 "i want to drink"  vs ref "i want to eat rice":
#   1-grams i, want, to, drink: 3 match of 4;  2-grams: "i want", "want to" match: 2 of 3
#   3-grams: "i want to": 1 of 2;              4-grams: "i want to drink": 0 of 1
# hyp 2 "good morning" vs "good morning": 1-grams 2 of 2, 2-grams 1 of 1, no 3-, 4-grams
# corpus: p1 = 5/6, p2 = 3/4, p3 = 1/2, p4 = 0/1 -> exp smoothing: 1 / (2 * 1) = 1/2
# hyp length 6 < ref length 7: BP = exp(1 - 7/6) = exp(-1/6)
HYPS = ["i want to drink", "good morning"]
REFS = ["i want to eat rice", "good morning"]
BP = math.exp(-1 / 6)
EXPECTED_BLEU = {
    "bleu1": 100 * BP * (5 / 6),
    "bleu2": 100 * BP * (5 / 6 * 3 / 4) ** (1 / 2),
    "bleu3": 100 * BP * (5 / 6 * 3 / 4 * 1 / 2) ** (1 / 3),
    "bleu4": 100 * BP * (5 / 6 * 3 / 4 * 1 / 2 * 1 / 2) ** (1 / 4),
}


def test_bleu_by_hand_with_brevity_penalty_and_exp_smoothing():
    scores = M.bleu_scores(HYPS, REFS)
    assert scores == pytest.approx(EXPECTED_BLEU, rel=REL)
    # and exactly sacreBLEU's corpus BLEU with max_ngram_order n
    for n in range(1, 5):
        bleu = BLEU(tokenize="13a", smooth_method="exp", max_ngram_order=n)
        assert scores[f"bleu{n}"] == bleu.corpus_score(HYPS, [REFS]).score


def test_bleu_smoothing_doubles_per_zero_order_and_missing_order_gives_zero():
    # "a b c" vs "a c b": p1 = 3/3; 2-grams "a b", "b c" none in {"a c", "c b"}: 0 of 2 ->
    # 1/(2*2); 3-gram "a b c": 0 of 1 -> 1/(4*1) (the factor doubles again);
    # no 4-gram at all -> precision 0 -> BLEU-4 = 0. Same length: BP = 1.
    scores = M.bleu_scores(["a b c"], ["a c b"])
    assert scores["bleu1"] == pytest.approx(100, rel=REL)
    assert scores["bleu2"] == pytest.approx(100 * (1 * 1 / 4) ** (1 / 2), rel=REL)  # 50
    assert scores["bleu3"] == pytest.approx(100 * (1 * 1 / 4 * 1 / 4) ** (1 / 3), rel=REL)
    assert scores["bleu4"] == 0.0


def test_bleu_without_any_match_is_zero():
    # sacreBLEU 2 stops early when no n-gram matches (Uni-Sign's vendored 1.4.2 smoothed
    # p1 to 1/(2*2) here instead)
    assert M.bleu_scores(["x y"], ["a b"]) == {f"bleu{n}": 0.0 for n in range(1, 5)}


def test_bleu_statistics_by_hand():
    # [sys_len, ref_len, correct 1..4, total 1..4] from the computation above
    assert M.bleu_statistics(HYPS, REFS).tolist() == [6, 7, 5, 3, 1, 0, 6, 4, 2, 1]
    assert M.bleu_statistics([], []).tolist() == [0] * 10


CORPUS_HYPS = [M.postprocess_prediction(t, "CSL_Daily") for t in
               ["他今年四岁。", "今天星期几?", "我想吃面条", "你们好!", "明天 我 去 学校。", ""]]
CORPUS_REFS = [M.postprocess_reference(t, "CSL_Daily") for t in
               ["他今年四岁。", "今天星期几？", "今天我想吃面条。", "你们好！", "明天我去学校，好吗？", "谢谢。"]]


@pytest.mark.parametrize("cut", range(len(CORPUS_HYPS) + 1))
def test_summed_bleu_statistics_equal_corpus_bleu_of_the_union(cut):
    # two processes with shares [:cut] and [cut:] (one of them possibly empty)
    stats = (M.bleu_statistics(CORPUS_HYPS[:cut], CORPUS_REFS[:cut])
             + M.bleu_statistics(CORPUS_HYPS[cut:], CORPUS_REFS[cut:]))
    whole = M.bleu_scores(CORPUS_HYPS, CORPUS_REFS)
    assert M.bleu_from_statistics(stats) == whole
    # the all-reduce of training/distributed.py sums as float64
    assert M.bleu_from_statistics(stats.astype(np.float64)) == whole
    for n in range(1, 5):
        bleu = BLEU(tokenize="13a", smooth_method="exp", max_ngram_order=n)
        assert whole[f"bleu{n}"] == bleu.corpus_score(CORPUS_HYPS, [CORPUS_REFS]).score


def test_bleu_from_statistics_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        M.bleu_from_statistics(np.zeros(8))


# ----------------------------------------------------------------------------- ROUGE-L

def _f(p, r):  # the rouge package's F: 2PR / (P + R + 1e-8)
    return 2 * p * r / (p + r + 1e-8)


def test_rouge_l_by_hand_counts_distinct_words():
    # 1) "the cat sat on the mat" vs "the cat is on the mat": the LCS is
    #    "the cat on the mat" (5 words), but `rouge` counts distinct words (sets):
    #    LCS {the, cat, on, mat} = 4, hyp {the, cat, sat, on, mat} = 5, ref 5
    #    -> P = R = 4/5 (textbook ROUGE-L would give 5/6)
    # 2) "i go home" vs "i go to school": LCS "i go" = 2, P = 2/3, R = 2/4
    hyps = ["the cat sat on the mat", "i go home"]
    refs = ["the cat is on the mat", "i go to school"]
    score, n_empty = M.rouge_l(hyps, refs)
    assert score == pytest.approx((_f(4 / 5, 4 / 5) + _f(2 / 3, 1 / 2)) / 2 * 100, rel=REL)
    assert n_empty == 0
    # and exactly what Uni-Sign computes
    assert score == Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"] * 100


def test_empty_prediction_counts_zero_in_rouge_and_bleu_is_still_computed():
    hyps = ["i go home", ""]
    refs = ["i go to school", "good"]
    result = M.compute_metrics(hyps, refs, "SLT")
    # ROUGE: sentence 1 as above, sentence 2 counts 0, mean over both sentences
    assert result["rouge"] == pytest.approx(_f(2 / 3, 1 / 2) / 2 * 100, rel=REL)
    assert result["rouge_empty"] == 1
    # BLEU: "i go home" vs "i go to school": p1 = 2/3, p2 = 1/2 ("i go"), p3 = 0/1 -> 1/2;
    # no 4-gram -> BLEU-4 = 0. Lengths 3 (+0) vs 4 (+1): BP = exp(1 - 5/3)
    bp = math.exp(1 - 5 / 3)
    assert result["bleu1"] == pytest.approx(100 * bp * 2 / 3, rel=REL)
    assert result["bleu2"] == pytest.approx(100 * bp * (2 / 3 * 1 / 2) ** (1 / 2), rel=REL)
    assert result["bleu3"] == pytest.approx(100 * bp * (2 / 3 * 1 / 2 * 1 / 2) ** (1 / 3), rel=REL)
    assert result["bleu4"] == 0.0
    # the rouge package itself raises on that sentence
    with pytest.raises(ValueError):
        Rouge().get_scores(hyps, refs, avg=True)


def test_rouge_sentences_without_a_word_on_either_side_count_zero():
    # `rouge` splits at '.', so "." has no sentence and raises like "" ("Hypothesis is
    # empty."); an empty reference raises too ("Reference is empty.")
    score, n_empty = M.rouge_l(["a b", ".", "a b"], ["a b", "a b", ""])
    assert score == pytest.approx(_f(1, 1) / 3 * 100, rel=REL)
    assert n_empty == 2


# OpenASL-like: references that end with a space, as 32 of Uni-Sign's OpenASL dev references do.
# `rouge` splits at '.': "i went home. " -> sentences "i went home", "" -> one more distinct
# word (the empty one) in the reference. Uni-Sign scores these strings as they are.
SPACED_HYPS = ["i went home.", "that is great", "see you soon"]
SPACED_REFS = ["i went home. ", "that is really great. ", "see you later "]


def test_word_level_texts_are_scored_unstripped_as_unisign_does():
    # by hand: 1) ref words {i, went, home, ''} = 4, hyp 3, LCS 3: P = 1, R = 3/4
    #          2) ref {that, is, really, great, ''} = 5, hyp 3, LCS 3: P = 1, R = 3/5
    #          3) "see you later " -> "see you later" (no '.'): P = R = 2/3
    by_hand = (_f(1, 3 / 4) + _f(1, 3 / 5) + _f(2 / 3, 2 / 3)) / 3 * 100
    reference = Rouge().get_scores(SPACED_HYPS, SPACED_REFS, avg=True)["rouge-l"]["f"] * 100  # Uni-Sign's call
    bleu = BLEU(tokenize="13a", smooth_method="exp")
    result = M.compute_metrics([M.postprocess_prediction(t, "OpenASL") for t in SPACED_HYPS],
                               [M.postprocess_reference(t, "OpenASL") for t in SPACED_REFS], "SLT")
    assert result["rouge"] == pytest.approx(by_hand, rel=REL) and result["rouge"] == pytest.approx(reference, rel=REL)
    for order in range(1, 5):  # sacreBLEU on the unstripped strings, as Uni-Sign calls it
        bleu.max_ngram_order = order
        assert result[f"bleu{order}"] == pytest.approx(bleu.corpus_score(SPACED_HYPS, [SPACED_REFS]).score, rel=REL)
    # stripping would change ROUGE-L (sentences 1 and 2 score P = R = 1 and P = 1, R = 3/4)
    stripped = M.compute_metrics([t.strip() for t in SPACED_HYPS], [t.strip() for t in SPACED_REFS], "SLT")
    assert stripped["rouge"] == pytest.approx((_f(1, 1) + _f(1, 3 / 4) + _f(2 / 3, 2 / 3)) / 3 * 100, rel=REL)
    assert stripped["rouge"] - result["rouge"] > 5  # 8.33 points on these three sentences
    assert all(stripped[f"bleu{n}"] == result[f"bleu{n}"] for n in range(1, 5))  # sacreBLEU ignores them


def test_result_files_keep_trailing_spaces_for_scoring(tmp_path):
    names = ["openasl_a", "openasl_b", "openasl_c"]
    pred_path, ref_path = M.write_results(tmp_path, "dev", names, SPACED_HYPS, SPACED_REFS)
    assert ref_path.read_text(encoding="utf-8").splitlines()[0] == "sample: openasl_a, ground-truth: i went home. "
    assert list(M.read_results(ref_path, "ground-truth").values()) == SPACED_REFS
    from_files = M.score_files(pred_path, ref_path, dataset="OpenASL", task="SLT")
    assert from_files == M.compute_metrics(SPACED_HYPS, SPACED_REFS, "SLT")
    assert from_files["rouge"] == pytest.approx(
        Rouge().get_scores(SPACED_HYPS, SPACED_REFS, avg=True)["rouge-l"]["f"] * 100, rel=REL)


# ----------------------------------------------------------------------------- WER

def test_wer_with_deletions_insertion_and_substitution():
    # 1) "i want eat red apple" -> "i want eat": 2 deletions
    # 2) "you go school" -> "you go go school": 1 insertion
    # 3) "mother like book" -> "mother like water": 1 substitution
    # 5 + 3 + 3 = 11 reference words
    result = M.wer(["i want eat", "you go go school", "mother like water"],
                   ["i want eat red apple", "you go school", "mother like book"])
    assert result == pytest.approx({"wer": 4 / 11 * 100, "del_rate": 2 / 11 * 100,
                                    "ins_rate": 1 / 11 * 100, "sub_rate": 1 / 11 * 100}, rel=REL)


def test_wer_uses_unisign_alignment_costs():
    # ref "p q r a b c", hyp "a b c s t c". Unit-cost Levenshtein: 5 substitutions (and the
    # final "c" matched) = 5 errors. Uni-Sign's costs (del 3, ins 3, sub 4): that alignment
    # costs 20, while deleting "p q r", matching "a b c", inserting "s t c" costs 18 (with
    # fewer than 3 deletions "a b" can never line up, and every other alignment costs more),
    # so Uni-Sign counts 3 deletions + 3 insertions = 6 errors of 6 words.
    result = M.wer(["a b c s t c"], ["p q r a b c"])
    assert result == pytest.approx({"wer": 100.0, "del_rate": 50.0, "ins_rate": 50.0,
                                    "sub_rate": 0.0}, rel=REL)


def test_wer_needs_reference_words():
    with pytest.raises(ValueError, match="no words"):
        M.wer(["a"], [""])


# ----------------------------------------------------------------------------- ISLR

def test_islr_per_class_differs_from_per_instance():
    # refs: hello x3, book x1. preds get 1 of 3 "hello" and the "book" right.
    # per instance: 2 of 4 = 50; per class: mean(1/3, 1/1) = 2/3 = 66.67
    result = M.islr_accuracy(["hello", "book", "home", "book"], ["hello", "hello", "hello", "book"])
    assert result == pytest.approx({"top1_acc_pi": 50.0, "top1_acc_pc": 200 / 3}, rel=REL)


def test_compute_metrics_per_task():
    assert M.compute_metrics(["a b"], ["a c"], "CSLR") == pytest.approx(
        {"wer": 50.0, "del_rate": 0.0, "ins_rate": 0.0, "sub_rate": 50.0}, rel=REL)
    assert M.compute_metrics(["cat", "dog"], ["cat", "cat"], "ISLR") == pytest.approx(
        {"top1_acc_pi": 50.0, "top1_acc_pc": 50.0}, rel=REL)
    with pytest.raises(ValueError, match="no sentences"):
        M.compute_metrics([], [], "SLT")
    with pytest.raises(ValueError, match="hypotheses"):
        M.compute_metrics(["a"], [], "CSLR")


# ----------------------------------------------------------------------------- result files

NAMES = ["S000020_P0004_T00", "S000021_P0001_T00", "S000022_P0002_T00"]


def test_write_read_round_trip_keeps_commas_colons_and_empty_text(tmp_path):
    preds = ["yes, sample: x, prediction: y", "", "time: 10:30"]
    refs = ["yes, sample: x, ground-truth: y", "a, b", "time: 10:30 "]
    pred_path, ref_path = M.write_results(tmp_path / "out", "test", NAMES, preds, refs)
    assert pred_path.name == "test_tmp_pres.txt" and ref_path.name == "test_tmp_refs.txt"
    assert pred_path.read_text(encoding="utf-8").splitlines()[0] == \
        "sample: S000020_P0004_T00, prediction: yes, sample: x, prediction: y"
    assert M.read_results(pred_path, "prediction") == dict(zip(NAMES, preds, strict=True))
    assert M.read_results(ref_path, "ground-truth") == dict(zip(NAMES, refs, strict=True))


def test_read_accepts_crlf_and_a_trimmed_empty_text(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"sample: a, prediction: x y\r\nsample: b, prediction:\r\n\r\n")
    assert M.read_results(path, "prediction") == {"a": "x y", "b": ""}


def test_score_files_equals_scoring_in_memory(tmp_path):
    preds = [M.postprocess_prediction(t, "CSL_Daily") for t in ["他今年四岁。", "今天星期几?", ""]]
    refs = [M.postprocess_reference(t, "CSL_Daily") for t in ["他今年四岁。", "今天星期几？", "谢谢。"]]
    pred_path, ref_path = M.write_results(tmp_path, "dev", NAMES, preds, refs)
    # the prediction file in another order: lines are paired by name
    lines = pred_path.read_text(encoding="utf-8").splitlines(keepends=True)
    pred_path.write_text("".join(reversed(lines)), encoding="utf-8")
    result = M.score_files(pred_path, ref_path, dataset="CSL_Daily", task="SLT")
    assert result == M.compute_metrics(preds, refs, "SLT")
    # sentence 1 and 2 identical (ROUGE 1 - tiny), sentence 3 empty: (2 * F(1, 1)) / 3
    assert result["rouge"] == pytest.approx(2 * _f(1, 1) / 3 * 100, rel=REL)
    assert result["rouge_empty"] == 1


def test_score_files_with_missing_samples_lists_them(tmp_path):
    pred_path, _ = M.write_results(tmp_path / "a", "test", NAMES[:2], ["x", "y"], ["x", "y"])
    _, ref_path = M.write_results(tmp_path / "b", "test", NAMES[1:], ["y", "z"], ["y", "z"])
    with pytest.raises(InputError) as info:
        M.score_files(pred_path, ref_path, dataset="WLASL", task="ISLR")
    message = str(info.value)
    assert message.startswith(str(pred_path))
    assert f"1 samples of {ref_path} are missing: {NAMES[2]}" in message
    assert f"1 samples are not in {ref_path}: {NAMES[0]}" in message


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("sample: a, prediction: x\nnot a result line\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: expected 'sample: <name>, prediction: <text>'") as info:
        M.read_results(path, "prediction")
    assert str(info.value).startswith(f"{path}: line 2")


def test_reference_file_given_as_predictions_is_named(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("sample: a, ground-truth: x\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1: .*looks like a ground-truth file"):
        M.read_results(path, "prediction")


def test_duplicate_name_names_both_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("sample: a, prediction: x\nsample: b, prediction: y\nsample: a, prediction: z\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"p.txt: line 3: sample a appears twice \(first on line 1\)"):
        M.read_results(path, "prediction")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nothing.txt: cannot read the ground-truth file"):
        M.read_results(tmp_path / "nothing.txt", "ground-truth")


def test_write_refuses_what_could_not_be_read_back(tmp_path):
    with pytest.raises(ValueError, match="line break"):
        M.write_results(tmp_path, "test", ["a"], ["x\ny"], ["x"])
    with pytest.raises(ValueError, match="appears twice"):
        M.write_results(tmp_path, "test", ["a", "a"], ["x", "y"], ["x", "y"])
    with pytest.raises(ValueError, match="cannot be written"):
        M.write_results(tmp_path, "test", ["a, prediction: b"], ["x"], ["x"])
