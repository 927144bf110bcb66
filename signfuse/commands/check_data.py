"""``signfuse check-data``: scan a dataset's files and report every problem."""
from signfuse.data import paths
from signfuse.data.check import check_split
from signfuse.flags import add_data_args, add_description_args, add_rgb_args


def cmd_check_data(args) -> None:
    """Print the report of each split; exit status 1 when a sample (or a split) is unusable."""
    splits = [args.split] if args.split is not None else list(paths.splits(args.dataset))
    reports = [check_split(args.dataset, split, args.data_root, args.label_dir, args.pose_dir,
                           args.desc_dir, args.use_descriptions, args.trust_pickles, args.max_length,
                           args.rgb_support, args.rgb_dir)
               for split in splits]
    for report in reports:
        print(report.format())
    usable, unusable = sum(r.usable for r in reports), sum(r.unusable for r in reports)
    failed = [r.split for r in reports if not r.ok]
    verdict = f"splits with problems: {', '.join(failed)}" if failed else "every sample is usable"
    print(f"check-data {args.dataset}: {usable} usable, {unusable} unusable samples; {verdict}")
    if failed:
        raise SystemExit(1)


def register(sub) -> None:
    sp = sub.add_parser("check-data", help="scan a dataset's label, pose, description and video files and "
                                           "report every problem (exit status 1 if a sample is unusable)")
    add_data_args(sp, "dataset", "split", "data_root", "label_dir", "pose_dir", "trust_pickles", "max_length",
                  required=("dataset",))
    add_description_args(sp, "use_descriptions", "desc_dir")  # --use_descriptions: also check the description files
    add_rgb_args(sp, "rgb_support", "rgb_dir")  # --rgb_support: also check the videos
    sp.set_defaults(func=cmd_check_data)
