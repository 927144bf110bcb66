"""``signfuse score``: score the prediction/reference files that evaluation writes."""
import json

from signfuse.flags import add_data_args
from signfuse.metrics import score_files


def cmd_score(args):
    print(json.dumps(score_files(args.pred, args.ref, dataset=args.dataset, task=args.task)))


def register(sub) -> None:
    sp = sub.add_parser("score", help="score prediction/reference files written by evaluation")
    sp.add_argument("--pred", required=True, help="<split>_tmp_pres.txt")
    sp.add_argument("--ref", required=True, help="<split>_tmp_refs.txt")
    add_data_args(sp, "dataset", "task")
    sp.set_defaults(func=cmd_score)
