"""``signfuse predict``: translate one pose file with a checkpoint."""
from signfuse.flags import (
    DESCRIPTION_MODEL,
    add_data_args,
    add_description_args,
    add_distributed_args,
    add_flags,
    add_generation_args,
    add_rgb_args,
)
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
    add_data_args(sp, "dataset", "max_length", "trust_pickles")
    add_flags(sp.add_argument_group("model"), "mt5_model")
    add_description_args(sp, "describe", "language", "frame_size", "fps", *DESCRIPTION_MODEL)
    add_generation_args(sp)
    add_distributed_args(sp, "device")
    add_rgb_args(sp, "rgb_support", "rgb_eval_sampling", "rgb_crop")
    sp.set_defaults(func=cmd_predict)
