"""A private source tree built at test time: TypeScript-shaped modules whose lines are the owner's
own (random identifiers, business logic), with the boilerplate every tree shares (licence header,
imports, braces) that must not count as private."""

from __future__ import annotations

import random
from pathlib import Path

LICENCE = """/*
 * Copyright (c) Example Corp. All rights reserved.
 * Licensed under the MIT License. See LICENSE in the project root for license information.
 */
"""
IMPORTS = [
    'import { useState, useEffect } from "react";',
    'import type { Request, Response } from "express";',
    'import { logger } from "../util/logger";',
]
_WORDS = [
    "ledger",
    "invoice",
    "tenant",
    "quota",
    "billing",
    "refund",
    "settle",
    "payout",
    "merchant",
    "account",
    "balance",
    "webhook",
    "retry",
    "schedule",
    "window",
    "bucket",
    "ratio",
    "margin",
    "credit",
    "debit",
    "cursor",
    "shard",
    "replica",
]


def _ident(rng: random.Random) -> str:
    return rng.choice(_WORDS) + rng.choice(_WORDS).capitalize() + str(rng.randint(10, 999))


def module_source(rng: random.Random, functions: int = 6) -> str:
    """One module: licence, common imports, then functions of distinctive statements."""
    out = [LICENCE, *IMPORTS, ""]
    for _ in range(functions):
        name = _ident(rng)
        args = ", ".join(f"{_ident(rng)}: number" for _ in range(2))
        out.append(f"export function {name}({args}): number {{")
        for _ in range(rng.randint(6, 10)):
            a, b, c = _ident(rng), _ident(rng), _ident(rng)
            out.append(
                f"  const {a} = computeShare({b}, {rng.randint(2, 97)}) * {c} + "
                f'"{rng.choice(_WORDS)}-{rng.randint(100, 9999)}".length;'
            )
        out.append(f"  return {_ident(rng)};")
        out.append("}")
        out.append("")
    return "\n".join(out) + "\n"


def build_private_tree(root: Path, files: int = 12, seed: int = 7) -> dict[str, str]:
    """Write the tree; returns {relative path: source}."""
    rng = random.Random(seed)
    written: dict[str, str] = {}
    for n in range(files):
        rel = f"src/{rng.choice(['billing', 'ledger', 'payouts'])}/module{n}.ts"
        text = module_source(rng)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written[rel] = text
    # a dependency inside the tree is never indexed (node_modules is always left out)
    dep = root / "node_modules/leftpad/index.js"
    dep.parent.mkdir(parents=True, exist_ok=True)
    dep.write_text(open_source_module(random.Random(99)))
    return written


def open_source_module(rng: random.Random) -> str:
    """Code the index never saw, sharing only boilerplate with the private tree."""
    out = [LICENCE, *IMPORTS, ""]
    for _ in range(5):
        name = f"helper{rng.randint(1000, 9999)}"
        out.append(f"export function {name}(input: string): string {{")
        for _ in range(8):
            out.append(
                f"  input = input.replace(/{rng.choice('abcdef')}{rng.randint(0, 99)}/g, "
                f'"{rng.randint(0, 99999)}").trim();'
            )
        out.append("  return input;")
        out.append("}")
        out.append("")
    return "\n".join(out) + "\n"


def reformatted(source: str) -> str:
    """The same code after a formatter moved line breaks: every statement split over two lines
    and pairs of short lines joined, indentation and quotes changed."""
    out = []
    for line in source.splitlines():
        stripped = line.strip()
        if " * " in stripped and stripped.startswith("const "):
            left, _, right = stripped.partition(" * ")
            out.append("    " + left + " *")
            out.append("        " + right.replace('"', "'"))
        elif stripped.startswith("const "):
            left, _, right = stripped.partition(" = ")
            out.append("    " + left + " =")
            out.append("        " + right.replace('"', "'"))
        else:
            out.append(stripped)
    return "\n".join(out) + "\n"
