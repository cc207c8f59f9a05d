"""Snakemake entry point of rule `ngrams`; the logic is distillab.ngram_filter.ngrams_from_snakemake."""

from distillab.entry import run
from distillab.ngram_filter import ngrams_from_snakemake

run(snakemake, ngrams_from_snakemake)  # noqa: F821 -- `snakemake` is injected by the script: directive
