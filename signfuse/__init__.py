"""signfuse: Uni-Sign-compatible sign language translation from pose keypoints, with
per-frame action descriptions fused into the pose features.

Heavy modules (torch models, transformers) load on first use of their names.
"""
from importlib import import_module

__version__ = "0.1.0"

_NAMES = {
    "ModelConfig": "signfuse.config",
    "TemporalAligner": "signfuse.data.descriptions",
    "DescriptionLoader": "signfuse.data.descriptions",
    "Describer": "signfuse.data.descriptions",
    "SignDataset": "signfuse.data.dataset",
    "collate_fn": "signfuse.data.dataset",
    "TextEncoder": "signfuse.models.text_fusion",
    "GatingFusion": "signfuse.models.text_fusion",
    "CrossAttentionFusion": "signfuse.models.text_fusion",
    "LearnableMaskEmbedding": "signfuse.models.text_fusion",
    "DescriptionFusion": "signfuse.models.text_fusion",
    "EmbeddingStore": "signfuse.models.text_store",
    "PoseEncoder": "signfuse.models.pose_encoder",
    "Uni_Sign": "signfuse.models.uni_sign",
    "UniSign": "signfuse.models.uni_sign",
    "build_model": "signfuse.models.uni_sign",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'signfuse' has no attribute {name!r}")
    module = import_module(_NAMES[name])
    value = getattr(module, "Uni_Sign" if name == "UniSign" else name)
    globals()[name] = value
    return value
