"""``distillab`` command line: small helpers around the Snakemake workflow.

    distillab validate-config configs/paper.yaml   # check a study config, naming bad keys
    distillab demo-corpus --out data/demo           # regenerate the bundled demo corpus
    distillab archive --config config.yaml --out demo-archive.tar.gz
                                                    # results + provenance + env + code state
    distillab verify-archive demo-archive.tar.gz --against results/demo
"""

from __future__ import annotations

import argparse
import logging
import sys

from distillab.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="distillab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate-config", help="validate a study config against the schema")
    v.add_argument("config")
    d = sub.add_parser("demo-corpus", help="regenerate the bundled demo corpus")
    d.add_argument("--out", default="data/demo")
    d.add_argument("--seed", type=int, default=None)
    a = sub.add_parser(
        "archive", help="bundle a study's results, provenance, configs, environment and "
        "code state into one tarball (large artifacts referenced by sha256)")
    a.add_argument("--config", required=True, help="the study config the results were made with")
    a.add_argument("--config-overlay", action="append", default=[], metavar="YAML",
                   help="a config merged into it, as a further --configfile (repeatable)")
    a.add_argument("--results", default=None,
                   help="the results dir (default: <results_dir>/<study> of the config)")
    a.add_argument("--out", required=True, help="the tarball to write (.tar.gz, or .tar)")
    ck = a.add_mutually_exclusive_group()
    ck.add_argument("--include-checkpoints", dest="include_checkpoints", action="store_true",
                    help="copy the train/*/ checkpoints into the archive")
    ck.add_argument("--reference-checkpoints", dest="include_checkpoints",
                    action="store_false", help="list checkpoints by sha256 only (default)")
    a.add_argument("--include-data", action="store_true",
                   help="copy the parquet datasets (queries, generate, verify, ...) too")
    a.add_argument("--no-logs", action="store_true", help="leave out logs/")
    a.add_argument("--repo", default=None,
                   help="the git checkout to record (default: this package's, else the cwd's)")
    a.set_defaults(include_checkpoints=False)
    va = sub.add_parser("verify-archive",
                        help="check an archive's members against its MANIFEST and SHA256SUMS")
    va.add_argument("archive")
    va.add_argument("--against", default=None, metavar="RESULTS_DIR",
                    help="also re-hash the referenced files at their paths under this dir")
    args = ap.parse_args(argv)
    if args.command in ("archive", "verify-archive"):
        return _archive_command(args, argv)
    if args.command == "validate-config":
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 1
        print(f"{args.config}: ok (study {cfg['study']}: {len(cfg['teachers'])} teachers, "
              f"{len(cfg['students'])} students, {len(cfg['evaluation']['benchmarks'])} benchmarks)")
        return 0
    from distillab import demo_corpus

    demo_args = ["--out", args.out] + (["--seed", str(args.seed)] if args.seed is not None else [])
    demo_corpus.main(demo_args)
    return 0


def _archive_command(args: argparse.Namespace, argv: list[str] | None) -> int:
    from distillab import archive

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "verify-archive":
        report = archive.verify_archive(args.archive, against=args.against)
        for failure in report.failures:
            print(failure, file=sys.stderr)
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
        return 0 if report.ok else 1
    command = ["distillab"] + list(sys.argv[1:] if argv is None else argv)
    try:
        manifest = archive.create_archive(
            args.results, [args.config, *args.config_overlay], args.out,
            include_checkpoints=args.include_checkpoints, include_data=args.include_data,
            logs=not args.no_logs, repo=args.repo, command=command)
    except archive.ArchiveError as exc:
        print(f"archive: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {len(manifest['members'])} members, "
          f"{len(manifest['referenced'])} referenced (study {manifest['study']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
