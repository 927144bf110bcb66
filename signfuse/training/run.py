"""A whole run: build data, model, optimizer from the command line; train (resumably) or
evaluate; write checkpoints, log.txt, TensorBoard scalars and result files.

Used by ``fine_tuning.py`` and ``signfuse train`` / ``signfuse eval``. Read top to bottom:

    train(args)                     in this process's group (torchrun / deepspeed / one process)
      start_run                     seeds, output folder, run.txt
      agreed_resume_state           last.pth to continue from (every rank finds the same)
      resolve_model_config          the model's configuration, once (settings.py)
      training_data                 descriptions, train and validation datasets
      build_run_model               Uni_Sign (+ fusion, text source), --finetune weights
      make_trainer                  optimizer, schedule, SyncBatchNorm, DDP/DeepSpeed, restored state
      run_epoch (until --epochs)    train_one_epoch, validation, log, checkpoints, last.pth
      finish_run                    replica check, summary
    evaluate(args)                  the checkpoint's settings (settings.py), dev then test

The parts: ``session`` (process group, output folder, log), ``resume``, ``inputs`` (datasets and
loaders; ``samplers``), ``model_setup`` (flags or checkpoint to model), ``parallel`` (DDP,
DeepSpeed), ``loop`` (the epochs), ``evaluation``.
"""
import functools

from signfuse.training.evaluation import evaluate_in_group
from signfuse.training.loop import train_in_group
from signfuse.training.session import in_process_group
from signfuse.training.settings import resolve_describer


def train(args, data=None) -> dict:
    """Fine-tune (or pre-train: ``data(args, log) -> TrainData`` builds its corpus, default
    ``inputs.training_data``); returns the final epoch's log entry (with the best metric). The
    describer's settings are resolved first (``resolve_describer``): the checkpoints record
    them complete."""
    return in_process_group(resolve_describer(args), functools.partial(train_in_group, data_fn=data))


# ----------------------------------------------------------------------------- evaluate

def evaluate(args, datasets=None) -> dict:
    """--eval: dev then test (How2Sign: test); with descriptions, also (or only) with every
    frame masked (--eval_descriptions both|off, results under "<split>_nodesc"). The settings
    of --finetune's checkpoint apply to the flags not given. ``datasets(args, describer) ->
    {split: dataset}`` picks other splits (pre-training). Returns {split: metrics}."""
    if datasets is None:
        return in_process_group(args, evaluate_in_group)
    return in_process_group(args, functools.partial(evaluate_in_group, datasets_fn=datasets))


