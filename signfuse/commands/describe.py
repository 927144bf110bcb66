"""``signfuse describe``: write action descriptions of a dataset's videos (rules or a local VLM)."""
import sys

from signfuse.describe.vlm import describe_dataset_vlm
from signfuse.describe.write import describe_dataset
from signfuse.flags import add_data_args, add_description_args, add_flags


def cmd_describe(args) -> None:
    if args.describer == "vlm":
        print(describe_dataset_vlm(args, progress=sys.stderr.isatty()).format())
        return
    print(describe_dataset(args, progress=sys.stderr.isatty()).format())


def register(sub) -> None:
    sp = sub.add_parser("describe", help="write action descriptions of a dataset's videos (from the pose by "
                                         "rules, or by a local vision-language model)")
    add_data_args(sp, "dataset", "data_root", "label_dir", "pose_dir", "split", "trust_pickles", required=("dataset",))
    # the output: <desc_dir>/<dataset>/<sample_id>.json, as runs read them; the rules describer's settings
    add_description_args(sp, "desc_dir", "language", "frame_size", "fps", "rules_clauses", "desc_max_tokens")
    g = sp.add_argument_group("describe")
    g.add_argument("--describer", default="rules", choices=("rules", "vlm"),
                   help="rules: from the pose keypoints (deterministic, CPU); vlm: a local vision-language model")
    g.add_argument("--workers", type=int, default=1, help="processes")
    g.add_argument("--overwrite", action="store_true", help="rewrite files that are up to date")
    add_vlm_args(sp)
    sp.set_defaults(func=cmd_describe)


def add_vlm_args(sp) -> None:
    g = sp.add_argument_group("--describer vlm")
    g.add_argument("--vlm_model", default=None,
                   help="local Hugging Face directory of an image-text-to-text model (never downloaded)")
    add_flags(g, "rgb_dir")
    g.add_argument("--segment_frames", type=int, default=16, help="frames per described segment")
    g.add_argument("--vlm_frames", type=int, default=4, help="frames of a segment shown to the model, tiled")
    g.add_argument("--vlm_image_size", type=int, default=448, help="side of the tiled image, pixels")
    g.add_argument("--pose_hints", action="store_true", help="add the rules describer's texts to the prompt")
    add_flags(g, "max_new_tokens", default={"max_new_tokens": 48})
    g.add_argument("--vlm_batch_size", type=int, default=8, help="segments per generate call (halved on OOM)")
    g.add_argument("--shard", default="0/1", help="K/N: describe samples K, K+N, K+2N, ... (K from 0)")
    add_flags(g, "device")
    g.add_argument("--vlm_dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="auto: bfloat16 on GPU, float32 on CPU")
