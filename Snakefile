# distillab: a reasoning-data distillation study as a file-based DAG (docs/DESIGN.md).
#   raw queries -> per-teacher verified shards -> TRL SFT checkpoints -> benchmark JSON
# Run:  snakemake --profile profiles/local            (the CPU demo, config.yaml)
#       snakemake --profile profiles/slurm --configfile configs/paper.yaml


# The embedded demo unless the user names a study with --configfile (then only theirs:
# Snakemake would otherwise merge the two studies' teachers).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/queries.smk"
include: "rules/generate.smk"
include: "rules/curate.smk"
include: "rules/export.smk"
include: "rules/analysis.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/release.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        f"{R}/report/summary.md",
        f"{R}/report/summary.json",
        # each student as an HF model dir with its evaluation results in the card
        S.releases(),
        # each teacher's verified dataset in the AM release layout (PAPER.md §9)
        expand(
            f"{R}/export/am/{{teacher}}/{{name}}.jsonl",
            teacher=S.teachers,
            name=AM_FILES,
        ),
