"""Action descriptions made by signfuse: ``signfuse describe`` and the on-the-fly describer.

- ``rules``: deterministic descriptions computed from the pose keypoints (CPU, NumPy).
  ``rules_settings(dataset, ...)`` gives the complete settings, ``RulesDescriber(settings)``
  describes a video, ``rules_describer_from_settings(settings, warn)`` rebuilds the one a
  checkpoint recorded.
- ``templates``: the versioned English and Chinese phrases.
- ``command``: the ``signfuse describe`` command (``register(subparsers)``).
- ``vlm``: descriptions by a local vision-language model.

The vocabulary of the attributes is documented in docs/describe.md.
"""
