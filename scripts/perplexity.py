"""Snakemake entry point of rule `perplexity`; the logic is distillab.perplexity.perplexity_from_snakemake."""

from distillab.entry import run
from distillab.perplexity import perplexity_from_snakemake

run(snakemake, perplexity_from_snakemake)  # noqa: F821 -- `snakemake` is injected by the script: directive
