"""``signfuse serve --finetune CKPT [CKPT ...] [--port N]``: a web page that translates a sign
language video or pose file with one of the given checkpoints (``signfuse.inference.serve``), on
127.0.0.1 only."""


from pathlib import Path

from signfuse import flags
from signfuse.commands.extract_pose import add_extraction_args
from signfuse.commands.translate import predict_args, predict_parser
from signfuse.errors import InputError
from signfuse.inference.serve import Translator, create_app, serve


def make_app(args, translator=None):
    """The app of ``signfuse serve ARGS``: its Translator makes each checkpoint's Predictor on the
    namespace ``signfuse translate`` gives its own (``translator``: a stand-in, for tests)."""

    def predictor_args(checkpoint):
        ns = predict_args(args, predict_parser())
        ns.finetune = checkpoint
        return ns
    return create_app(args, translator or Translator(args, predictor_args))


def cmd_serve(args) -> None:
    for ckpt in args.finetune:
        if not Path(ckpt).is_file():
            raise InputError(f"{ckpt}: checkpoint not found")
    serve(args, make_app(args))


def register(sub) -> None:
    sp = sub.add_parser("serve", help="a web page that translates videos and pose files (127.0.0.1)",
                        description=__doc__.split("\n\n")[0])
    g = sp.add_argument_group("server")
    names, kw = flags.FLAGS["finetune"]
    g.add_argument(*names, nargs="+", required=True, metavar="CKPT",
                   help="the checkpoints the page offers (each read with its recorded settings, as translate)")
    flags.add_flags(g, "port", "max_upload_mb", "max_seconds", "max_queue")
    add_extraction_args(sp)
    # the translation's flags, as `signfuse translate` has them
    flags.add_prediction_args(sp)
    sp.set_defaults(func=cmd_serve, description=None, trust_pickles=False)
