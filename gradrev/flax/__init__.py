"""Flax layers: ``gradrev.flax.nnx.GradientReversal`` and ``gradrev.flax.linen.GradientReversal``."""
