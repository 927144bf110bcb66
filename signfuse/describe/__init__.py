"""Action descriptions made by signfuse: ``signfuse describe`` and the on-the-fly describer.

- ``rules``: deterministic descriptions computed from the pose keypoints (CPU, NumPy).
  ``rules_settings(dataset, ...)`` gives the complete settings, ``RulesDescriber(settings)``
  describes a video, ``rules_describer_from_settings(settings, warn)`` rebuilds the one a
  checkpoint recorded.
- ``templates``: the versioned English and Chinese phrases.
- ``write``: writing a dataset's description files (``signfuse describe``, whose parser is
  ``signfuse.commands.describe``).
- ``vlm``: descriptions by a local vision-language model.
- ``describer``: the hooks the datasets call (``PoseDescriber``, ``FileDescriber``) and
  ``build_describer``, the one factory of a describer from a command's flags.

The vocabulary of the attributes is documented in docs/describe.md.
"""
