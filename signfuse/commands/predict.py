"""``signfuse predict``: translate one pose file with a checkpoint."""
from signfuse.flags import add_flags, add_prediction_args
from signfuse.inference.predict import predict_file


def cmd_predict(args):
    print(predict_file(args))


def register(sub) -> None:
    text = ("translate one pose file; the model's settings (mT5, dataset, sampling, alignment, generation, "
            "descriptions, RGB) are the checkpoint's unless given")
    sp = sub.add_parser("predict", help="translate one pose file", description=text)
    g = sp.add_argument_group("inputs")
    add_flags(g, "finetune", required=("finetune",))
    g.add_argument("--pose", required=True, help="pose .pkl file")
    g.add_argument("--description", default=None, help="description .json file of that video")
    add_flags(g, "video")
    add_prediction_args(sp, "trust_pickles")
    sp.set_defaults(func=cmd_predict)
