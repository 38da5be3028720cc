"""``kiln generate RUN_DIR|URI --prompt "ROMEO:" [--max-new-tokens 200] [--temperature 0.8]
[--top-k 40] [--seed 1]``: print text sampled from a trained language model.

The model package alone is enough (its vocabulary is in model.json); the same seed prints the
same text.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate", help="sample text from a trained language model",
        description="Continue a prompt with a trained character-level language model "
                    "(data.name text, model.name transformer). Deterministic for a seed.",
        allow_abbrev=False,
    )
    parser.add_argument("run_dir", help="a run directory (runs/<name>_<time>/) or models:/NAME@ALIAS | models:/NAME/VERSION")
    parser.add_argument("--prompt", required=True, help="text to continue; every character must be in the model's vocabulary")
    parser.add_argument("--max-new-tokens", type=int, default=200, metavar="N", help="characters to generate (default 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 is greedy (default 0.8)")
    parser.add_argument("--top-k", type=int, default=40, metavar="K", help="sample among the K likeliest tokens; 0: all (default 40)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sampler (default 1)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kiln.cli.args import source
    from kiln.lm.generate import sample_from_package

    text = sample_from_package(
        source(args.run_dir), args.prompt, args.max_new_tokens, args.temperature,
        args.top_k or None, args.seed,
    )
    print(text)
    return 0
