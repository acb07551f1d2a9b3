"""Drop-ins for other gradient reversal layers: change the import line, keep the code.

Each module has a peer's names, arguments, defaults and ``state_dict`` keys, built on
gradrev's backends, so the gradients are gradrev's canonical bits:

- ``gradrev.compat.revgrad``: pytorch-revgrad (``pytorch_revgrad``).
- ``gradrev.compat.gradient_reversal``: torch-gradient-reversal and tadeephuy's
  GradientReversal, which both install as ``gradient_reversal``.
- ``gradrev.compat.tllib``: Transfer-Learning-Library's ``tllib.modules.grl``.
- ``gradrev.compat.adapt``: adapt's ``UpdateLambda`` Keras callback (``adapt.utils``).

What is exactly equal and what is not, peer by peer: docs/migration.md.
"""
