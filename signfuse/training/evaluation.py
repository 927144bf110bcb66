"""Evaluation of a checkpoint (``signfuse eval``, ``--eval``): its settings for the flags not
given, dev then test, with descriptions on, off or both."""
import json
import time

from signfuse.describe.describer import build_describer
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
)


def description_modes(args) -> list[bool]:
    """descriptions_off values to evaluate: [False] (on), [True] (off) or both."""
    if not args.use_descriptions:
        return [False]
    return {"on": [False], "off": [True], "both": [False, True]}[args.eval_descriptions]



def evaluate_in_group(args, info: D.DistInfo, datasets_fn=eval_datasets) -> dict:
    """--eval in one process of the group; ``datasets_fn(args, describer) -> {split: dataset}``
    (default ``eval_datasets``: dev then test; pre-training: its held-out entries)."""
    out, log = start_run(args, info)
    checkpoint = read_checkpoint(args)
    if checkpoint is not None:
        args = apply_checkpoint_settings(args, checkpoint, args.finetune, log)
        check_text_encoder(args, checkpoint, args.finetune, log)
    describer = build_describer(args, log)
    model, _ = build_run_model(args, info, log, checkpoint)
    del checkpoint
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, log=log, amp_dtype=amp_dtype(args, info.device))
    datasets = datasets_fn(args, describer)
    announce_descriptions(describer, datasets, args.trust_pickles, log)
    warm_text_cache(model, describer, [i for ds in datasets.values() for i in ds.sample_ids()], log)
    results = {}
    for split, ds in datasets.items():
        loader = build_loader(ds, args, info, train=False)
        for off in description_modes(args):
            t0 = time.time()
            tag = "_nodesc" if off else ""
            res = engine.evaluate(model, loader, ctx, split, descriptions_off=off, tag=tag)
            res["time_s"] = time.time() - t0
            results[split + tag] = res
            log(f"{split}{' (descriptions off)' if off else ''}: " + json.dumps(plain(res)))
    return results
