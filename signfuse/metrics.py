"""Evaluation metrics of Uni-Sign, its CSL-Daily post-processing, and the result files.

The numbers match Uni-Sign's evaluation (docs/unisign-compat.md section 6):

- SLT: BLEU-1..4 are sacreBLEU corpus BLEU (tokenizer ``13a``, ``exp`` smoothing,
  cumulative up to order n); ROUGE-L is the mean over sentences of the ROUGE-L F-score
  of the ``rouge`` package, x100. A sentence that ``rouge`` cannot score (no word in the
  hypothesis or in the reference) counts as 0 in that mean and is counted.
- CSLR: word error rate with Uni-Sign's alignment costs (deletion 3, insertion 3,
  substitution 4), as percentages of the reference words.
- ISLR: top-1 accuracy per instance and per class, x100.

For CSL_Daily and CSL_News translation (CSL_News: pre-training's evaluation), predictions and
references are compared character by character (``postprocess_prediction`` /
``postprocess_reference``). Every other text is
scored as it is, as Uni-Sign scores its in-memory strings: not even stripped. It matters
for ROUGE-L: ``rouge`` splits sentences at '.', so a reference ending in ". " has one more
(empty) sentence and one more distinct word than the stripped one (Uni-Sign's OpenASL dev
references: 32 end with a space; stripped, dev ROUGE-L would be 42.844 instead of its 42.813).
sacreBLEU and the WER ignore surrounding spaces.

BLEU can be computed across processes: each process computes ``bleu_statistics`` on its
share, the arrays are summed, and ``bleu_from_statistics`` gives the corpus BLEU of the union.

Evaluation writes ``<split>_tmp_pres.txt`` and ``<split>_tmp_refs.txt`` (one
``sample: <name>, prediction: <text>`` / ``sample: <name>, ground-truth: <text>`` line per
sample, post-processed); ``score_files`` scores such a pair again (``signfuse score``).
"""
from pathlib import Path

import numpy as np
from rouge import Rouge
from sacrebleu.metrics import BLEU

from signfuse.config import DATASETS, TASKS
from signfuse.errors import InputError

# Datasets whose translations are scored character by character (Chinese).
CHAR_LEVEL_DATASETS = ("CSL_Daily", "CSL_News")  # as Uni-Sign: the Chinese translations are scored on characters
# Full-width punctuation of the references that mT5's tokenizer outputs as ASCII.
REFERENCE_REPLACEMENTS = (("，", ","), ("？", "?"))

BLEU_TOKENIZE = "13a"
BLEU_SMOOTH = "exp"
BLEU_MAX_ORDER = 4
# bleu_statistics layout (sacreBLEU's own segment statistics):
# [sys_len, ref_len, correct_1..correct_4, total_1..total_4]
BLEU_STATS_SIZE = 2 + 2 * BLEU_MAX_ORDER

# Uni-Sign's WER alignment costs (SLRT_metrics.py); the error counts are unweighted.
WER_COST_DEL = 3
WER_COST_INS = 3
WER_COST_SUB = 4

# Result files: "sample: <name>, prediction: <text>" / "sample: <name>, ground-truth: <text>".
RESULT_KINDS = ("prediction", "ground-truth")
RESULT_PREFIX = "sample: "
MAX_NAMES_IN_MESSAGE = 10


# ----------------------------------------------------------------------------- post-processing

def _is_char_level(dataset: str, task: str) -> bool:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} (expected one of {', '.join(DATASETS)})")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    return task == "SLT" and dataset in CHAR_LEVEL_DATASETS


def _split_characters(text: str) -> str:
    return " ".join(text)


def postprocess_prediction(text: str, dataset: str, task: str = "SLT") -> str:
    """A decoded prediction in the form that is scored and written.

    CSL translation: all spaces and newlines removed, then the characters joined by single
    spaces (Uni-Sign's fix for the mT5 tokenizer). Otherwise: the text as it is (Uni-Sign
    scores its strings unstripped). Idempotent."""
    if _is_char_level(dataset, task):
        return _split_characters(text.replace(" ", "").replace("\n", ""))
    return text


def postprocess_reference(text: str, dataset: str, task: str = "SLT") -> str:
    """A reference in the form that is scored and written.

    CSL translation: '，' -> ',' and '？' -> '?', spaces removed, then the characters joined
    by single spaces. Otherwise: the text as it is. Idempotent."""
    if _is_char_level(dataset, task):
        for full_width, ascii_char in REFERENCE_REPLACEMENTS:
            text = text.replace(full_width, ascii_char)
        return _split_characters(text.replace(" ", ""))
    return text


def _check_pairs(hyps, refs) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if len(hyps) == 0:
        raise ValueError("no sentences to score")


# ----------------------------------------------------------------------------- BLEU

def bleu_statistics(hyps, refs) -> np.ndarray:
    """BLEU's sufficient statistics of a corpus, to be summed across processes.

    int64 array ``[sys_len, ref_len, correct_1..4, total_1..4]`` (sacreBLEU's layout):
    hypothesis and closest reference lengths in tokens, then per n-gram order the clipped
    matches and the hypothesis n-grams. An empty corpus gives zeros."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if len(hyps) == 0:
        return np.zeros(BLEU_STATS_SIZE, dtype=np.int64)
    bleu = BLEU(tokenize=BLEU_TOKENIZE, smooth_method=BLEU_SMOOTH, max_ngram_order=BLEU_MAX_ORDER)
    score = bleu.corpus_score(list(hyps), [list(refs)])
    return np.array([score.sys_len, score.ref_len, *score.counts, *score.totals], dtype=np.int64)


def bleu_from_statistics(stats) -> dict:
    """``bleu1``..``bleu4`` (0-100) from (summed) ``bleu_statistics``: exactly sacreBLEU's
    corpus BLEU with ``max_ngram_order`` n on the corpus the statistics came from."""
    stats = np.asarray(stats)
    if stats.shape != (BLEU_STATS_SIZE,):
        raise ValueError(f"BLEU statistics must have shape ({BLEU_STATS_SIZE},), not {stats.shape}")
    sys_len, ref_len = int(stats[0]), int(stats[1])
    correct = [int(c) for c in stats[2:2 + BLEU_MAX_ORDER]]
    total = [int(t) for t in stats[2 + BLEU_MAX_ORDER:]]
    scores = {}
    for order in range(1, BLEU_MAX_ORDER + 1):
        score = BLEU.compute_bleu(correct[:order], total[:order], sys_len, ref_len,
                                  smooth_method=BLEU_SMOOTH, max_ngram_order=order)
        scores[f"bleu{order}"] = float(score.score)
    return scores


def bleu_scores(hyps, refs) -> dict:
    """Corpus BLEU-1..4 (sacreBLEU, tokenizer 13a, exp smoothing, cumulative), 0-100."""
    _check_pairs(hyps, refs)
    return bleu_from_statistics(bleu_statistics(hyps, refs))


# ----------------------------------------------------------------------------- ROUGE-L

def _has_no_rouge_word(text: str) -> bool:
    """True when ``rouge`` finds no word in ``text``: it splits sentences at '.', and raises
    on a text with no sentence (empty, or only full stops); a text of spaces and full stops
    only scores 0 against any normal reference."""
    return not text.replace(".", " ").split()


def rouge_l(hyps, refs) -> tuple:
    """(mean ROUGE-L F-score x100, number of sentences scored 0 for want of a word).

    Equals ``Rouge().get_scores(hyps, refs, avg=True)['rouge-l']['f'] * 100`` when every
    hypothesis and reference has a word; otherwise such sentences count as 0 in the mean
    over all sentences (``rouge`` raises on them)."""
    _check_pairs(hyps, refs)
    scorable = [(h, r) for h, r in zip(hyps, refs, strict=True)
                if not (_has_no_rouge_word(h) or _has_no_rouge_word(r))]
    total = 0.0
    if scorable:
        scorer = Rouge(metrics=["rouge-l"], stats=["f"])
        for sentence in scorer.get_scores([h for h, _ in scorable], [r for _, r in scorable]):
            total += sentence["rouge-l"]["f"]
    return total / len(hyps) * 100, len(hyps) - len(scorable)


# ----------------------------------------------------------------------------- WER

def _word_errors(ref_words: list, hyp_words: list) -> tuple:
    """(deletions, insertions, substitutions) of the cheapest alignment under Uni-Sign's
    costs, ties broken as Uni-Sign does (match, then substitution, insertion, deletion)."""
    n_ref, n_hyp = len(ref_words), len(hyp_words)
    cost = [[0] * (n_hyp + 1) for _ in range(n_ref + 1)]
    for j in range(n_hyp + 1):
        cost[0][j] = j * WER_COST_INS
    for i in range(n_ref + 1):
        cost[i][0] = i * WER_COST_DEL
    for i in range(1, n_ref + 1):
        for j in range(1, n_hyp + 1):
            if ref_words[i - 1] == hyp_words[j - 1]:
                cost[i][j] = cost[i - 1][j - 1]
            else:
                cost[i][j] = min(cost[i - 1][j - 1] + WER_COST_SUB,
                                 cost[i][j - 1] + WER_COST_INS,
                                 cost[i - 1][j] + WER_COST_DEL)

    deletions = insertions = substitutions = 0
    i, j = n_ref, n_hyp
    while i > 0 or j > 0:
        diagonal = i > 0 and j > 0
        if diagonal and cost[i][j] == cost[i - 1][j - 1] and ref_words[i - 1] == hyp_words[j - 1]:
            i, j = i - 1, j - 1
        elif diagonal and cost[i][j] == cost[i - 1][j - 1] + WER_COST_SUB:
            substitutions += 1
            i, j = i - 1, j - 1
        elif j > 0 and cost[i][j] == cost[i][j - 1] + WER_COST_INS:
            insertions += 1
            j -= 1
        else:
            deletions += 1
            i -= 1
    return deletions, insertions, substitutions


def wer(hyps, refs) -> dict:
    """Corpus word error rate over whitespace tokens, as Uni-Sign's ``wer_list``:
    ``wer``, ``del_rate``, ``ins_rate``, ``sub_rate``, each a total over the corpus divided
    by the total number of reference words, x100."""
    _check_pairs(hyps, refs)
    deletions = insertions = substitutions = ref_words = 0
    for hyp, ref in zip(hyps, refs, strict=True):
        d, i, s = _word_errors(ref.split(), hyp.split())
        deletions, insertions, substitutions = deletions + d, insertions + i, substitutions + s
        ref_words += len(ref.split())
    if ref_words == 0:
        raise ValueError("the word error rate is undefined: the references have no words")
    return {
        "wer": (deletions + insertions + substitutions) / ref_words * 100,
        "del_rate": deletions / ref_words * 100,
        "ins_rate": insertions / ref_words * 100,
        "sub_rate": substitutions / ref_words * 100,
    }


# ----------------------------------------------------------------------------- ISLR

def islr_accuracy(preds, refs) -> dict:
    """Top-1 accuracy (exact string match) per instance (``top1_acc_pi``) and per class
    (``top1_acc_pc``: mean over the reference classes of their accuracy), x100."""
    _check_pairs(preds, refs)
    hits = [pred == ref for pred, ref in zip(preds, refs, strict=True)]
    per_class = {}  # reference class -> [samples, hits]
    for ref, hit in zip(refs, hits, strict=True):
        counts = per_class.setdefault(ref, [0, 0])
        counts[0] += 1
        counts[1] += hit
    class_accuracies = np.array([n_hits / n for n, n_hits in per_class.values()])
    return {
        "top1_acc_pi": sum(hits) / len(hits) * 100,
        "top1_acc_pc": float(class_accuracies.mean() * 100),
    }


# ----------------------------------------------------------------------------- per task

def compute_metrics(hyps, refs, task: str) -> dict:
    """The metrics of ``task`` on post-processed strings.

    SLT: ``bleu1``..``bleu4``, ``rouge``, ``rouge_empty``; CSLR: ``wer``, ``del_rate``,
    ``ins_rate``, ``sub_rate``; ISLR: ``top1_acc_pi``, ``top1_acc_pc``."""
    if task == "SLT":
        rouge, n_empty = rouge_l(hyps, refs)
        return {**bleu_scores(hyps, refs), "rouge": rouge, "rouge_empty": n_empty}
    if task == "CSLR":
        return wer(hyps, refs)
    if task == "ISLR":
        return islr_accuracy(preds=hyps, refs=refs)
    raise ValueError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")


# ----------------------------------------------------------------------------- result files

def _separator(kind: str) -> str:
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r} (expected one of {', '.join(RESULT_KINDS)})")
    return f", {kind}:"


def _result_lines(names, texts, kind: str) -> list:
    separator = _separator(kind)
    lines, seen = [], set()
    for name, text in zip(names, texts, strict=True):
        if separator in name or any(c in name for c in "\r\n") or name != name.strip():
            raise ValueError(f"sample name {name!r} cannot be written on a {kind} line")
        if "\n" in text or "\r" in text:
            raise ValueError(f"sample {name}: the {kind} contains a line break: {text!r}")
        if name in seen:
            raise ValueError(f"sample {name} appears twice")
        seen.add(name)
        lines.append(f"{RESULT_PREFIX}{name}{separator} {text}\n")
    return lines


def write_results(output_dir, split: str, names, preds, refs) -> tuple:
    """Write ``<output_dir>/<split>_tmp_pres.txt`` and ``<split>_tmp_refs.txt``, one line per
    sample in the order given. Returns the two paths."""
    if not len(names) == len(preds) == len(refs):
        raise ValueError(f"{len(names)} names, {len(preds)} predictions, {len(refs)} references")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pred_path = output_dir / f"{split}_tmp_pres.txt"
    ref_path = output_dir / f"{split}_tmp_refs.txt"
    for path, texts, kind in ((pred_path, preds, "prediction"), (ref_path, refs, "ground-truth")):
        lines = _result_lines(names, texts, kind)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
    return pred_path, ref_path


def _parse_result_line(line: str, separator: str):
    """(name, text) of one line, or None when it is not in the expected form."""
    if not line.startswith(RESULT_PREFIX):
        return None
    rest = line[len(RESULT_PREFIX):]
    at = rest.find(separator)
    if at <= 0:
        return None
    text = rest[at + len(separator):]
    return rest[:at], text[1:] if text.startswith(" ") else text


def read_results(path, kind: str) -> dict:
    """{name: text} of a result file of ``kind`` ('prediction' or 'ground-truth'), in file
    order. A text is read as written, trailing spaces included (they change ROUGE-L). Blank
    lines are skipped; a malformed line or a repeated name is an InputError."""
    separator = _separator(kind)
    other = _separator(next(k for k in RESULT_KINDS if k != kind))
    try:
        with open(path, encoding="utf-8-sig", newline="\n") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the {kind} file: {e}") from None

    results, first_line = {}, {}
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\n").removesuffix("\r")
        if not line.strip():
            continue
        parsed = _parse_result_line(line, separator)
        if parsed is None:
            hint = (f" (this looks like a {other[2:-1]} file)"
                    if _parse_result_line(line, other) is not None else "")
            raise InputError(f"{path}: line {number}: expected 'sample: <name>{separator} <text>'"
                             f"{hint}, got {line[:80]!r}")
        name, text = parsed
        if name in results:
            raise InputError(f"{path}: line {number}: sample {name} appears twice "
                             f"(first on line {first_line[name]})")
        results[name] = text
        first_line[name] = number
    return results


def _some_names(names: list) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE])
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def score_files(pred_path, ref_path, dataset: str = "CSL_Daily", task: str = "SLT") -> dict:
    """Score a prediction file against a reference file (lines paired by sample name),
    after the dataset's post-processing: ``compute_metrics`` of ``task``."""
    preds = read_results(pred_path, "prediction")
    refs = read_results(ref_path, "ground-truth")
    not_predicted = [name for name in refs if name not in preds]
    not_referenced = [name for name in preds if name not in refs]
    if not_predicted or not_referenced:
        problems = []
        if not_predicted:
            problems.append(f"{len(not_predicted)} samples of {ref_path} are missing: "
                            + _some_names(not_predicted))
        if not_referenced:
            problems.append(f"{len(not_referenced)} samples are not in {ref_path}: "
                            + _some_names(not_referenced))
        raise InputError(f"{pred_path}: not the same samples as {ref_path}: " + "; ".join(problems))
    if not refs:
        raise InputError(f"{ref_path}: no samples to score")

    names = list(refs)  # reference file order
    hyps = [postprocess_prediction(preds[name], dataset, task) for name in names]
    targets = [postprocess_reference(refs[name], dataset, task) for name in names]
    try:
        return compute_metrics(hyps, targets, task)
    except ValueError as e:
        raise InputError(f"{ref_path}: {e}") from None
