"""Evaluation of a checkpoint (``signfuse eval``, ``--eval``): its settings for the flags not
given, dev then test, with descriptions on, off, both, predicted or all (docs/predictor.md)."""
import json
import time

from signfuse.describe.describer import build_describer
from signfuse.errors import InputError
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.inputs import (
    announce_descriptions,
    build_loader,
    eval_datasets,
)
from signfuse.training.model_setup import (
    build_run_model,
    read_checkpoint,
    warm_text_cache,
)
from signfuse.training.parallel import amp_dtype
from signfuse.training.session import start_run
from signfuse.training.settings import (
    apply_checkpoint_settings,
    check_text_encoder,
    plain,
    resolve_model_config,
)


#: results key suffix of each description mode of --eval_descriptions
MODE_TAGS = {"on": "", "off": "_nodesc", "predicted": "_predicted"}
MODE_NAMES = {"on": "", "off": " (descriptions off)", "predicted": " (descriptions predicted)"}


def description_modes(args, has_predictor: bool = False) -> list[str]:
    """The description modes to evaluate ("on", "off", "predicted") from --eval_descriptions;
    ``all`` gives "predicted" only to a model with a description predictor."""
    if not args.use_descriptions:
        return ["on"]
    if args.eval_descriptions == "predicted" and not has_predictor:
        raise InputError(f"--eval_descriptions predicted: {args.finetune or 'the model'} has no description "
                         "predictor (train with --desc_distill_weight)")
    modes = {"on": ["on"], "off": ["off"], "both": ["on", "off"], "predicted": ["predicted"],
             "all": ["on", "off", "predicted"]}[args.eval_descriptions]
    return [m for m in modes if m != "predicted" or has_predictor]


def evaluation_describer(args, modes: list, has_predictor: bool, log) -> tuple:
    """(describer or None, modes): no describer when only "predicted" is evaluated (no description
    is read); a model with a predictor whose descriptions cannot be found evaluates "predicted"
    instead of "on", said in one line."""
    if modes == ["predicted"]:
        return None, modes
    try:
        return build_describer(args, log), modes
    except InputError as e:
        if not has_predictor:
            raise
        log(f"no descriptions ({e}): the description predictor's embeddings are used instead")
        return None, list(dict.fromkeys("predicted" if m == "on" else m for m in modes))


def evaluate_in_group(args, info: D.DistInfo, datasets_fn=eval_datasets) -> dict:
    """--eval in one process of the group; ``datasets_fn(args, describer) -> {split: dataset}``
    (default ``eval_datasets``: dev then test; pre-training: its held-out entries)."""
    out, log = start_run(args, info)
    checkpoint = read_checkpoint(args)
    if checkpoint is not None:
        args = apply_checkpoint_settings(args, checkpoint, args.finetune, log)
        check_text_encoder(args, checkpoint, args.finetune, log)
    cfg = resolve_model_config(args, checkpoint, args.finetune)
    has_predictor = cfg.use_descriptions and cfg.desc_distill_weight > 0
    describer, modes = evaluation_describer(args, description_modes(args, has_predictor), has_predictor, log)
    model, _ = build_run_model(args, info, log, checkpoint, cfg)
    del checkpoint
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, log=log, amp_dtype=amp_dtype(args, info.device))
    datasets = datasets_fn(args, describer)
    announce_descriptions(describer, datasets, args.trust_pickles, log)
    warm_text_cache(model, describer, [i for ds in datasets.values() for i in ds.sample_ids()], log)
    results = {}
    for split, ds in datasets.items():
        loader = build_loader(ds, args, info, train=False)
        for mode in modes:
            t0 = time.time()
            tag = MODE_TAGS[mode]
            res = engine.evaluate(model, loader, ctx, split, descriptions_off=mode == "off", tag=tag,
                                  predicted=mode == "predicted")
            res["time_s"] = time.time() - t0
            results[split + tag] = res
            log(f"{split}{MODE_NAMES[mode]}: " + json.dumps(plain(res)))
    return results
