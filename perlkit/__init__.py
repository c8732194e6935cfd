"""perlkit: PERL (Parameter Efficient Reasoning in CLIP Latent Space) and its rivals in one harness."""

__version__ = "0.1.0"
