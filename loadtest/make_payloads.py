"""Sample the load test's request texts from the dev splits into ``loadtest/payloads.json``.

Sentences only, a few hundred in all (the file stays well under 100 KB):

* ``sentiment``: SST-2 ``sentiment/dev.tsv``
* ``tag``: CoNLL-2003 ``ner/valid.txt`` sentences, tokens joined by spaces
* ``translate``: Multi30k ``translation/val.en``
* ``generate``: line-start prompts from the last 10 % of Tiny Shakespeare (its usual validation part)

    python -m loadtest.make_payloads [--data-dir DIR] [--out loadtest/payloads.json]

The data root is ``RNNSERVE_DATA_DIR`` (default ``../shared/data``), as for training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

from training.readers import read_conll, read_labelled_text, read_plain_text
from training.settings import get_training_settings

OUT = Path(__file__).with_name("payloads.json")
SOURCES = {
    "sentiment": "sentiment/dev.tsv",
    "tag": "ner/valid.txt",
    "translate": "translation/val.en",
    "generate": "generation/input.txt",
}
COUNTS = {"sentiment": 200, "tag": 120, "translate": 120, "generate": 80}
MAX_CHARS = 200
PROMPT_CHARS = 48
GENERATION_VALIDATION_FRACTION = 0.1


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sample(items: list[str], count: int, rng: random.Random) -> list[str]:
    unique = sorted({s for s in items if s.strip() and len(s) <= MAX_CHARS})
    return rng.sample(unique, min(count, len(unique)))


def generation_prompts(text: str, count: int, rng: random.Random) -> list[str]:
    """Prompts that start at a line start in the validation tail: up to ``PROMPT_CHARS``, cut at a space."""
    tail = text[int(len(text) * (1 - GENERATION_VALIDATION_FRACTION)) :]
    lines = tail.splitlines()[1:]  # the first one may start mid-line
    lines = [line for line in lines if len(line.strip()) >= 8]
    prompts = set()
    for line in lines:
        prompt = line[:PROMPT_CHARS]
        if len(line) > PROMPT_CHARS and " " in prompt:
            prompt = prompt[: prompt.rindex(" ")]
        prompts.add(prompt)
    return rng.sample(sorted(prompts), min(count, len(prompts)))


def make_payloads(data_dir: Path, seed: int = 0, counts: dict[str, int] | None = None) -> dict:
    counts = {**COUNTS, **(counts or {})}
    rng = random.Random(seed)
    paths = {task: data_dir / rel for task, rel in SOURCES.items()}
    texts = {
        "sentiment": _sample(
            [r.text for r in read_labelled_text(paths["sentiment"])], counts["sentiment"], rng
        ),
        "tag": _sample([" ".join(s.tokens) for s in read_conll(paths["tag"])], counts["tag"], rng),
        "translate": _sample(
            paths["translate"].read_text(encoding="utf-8").splitlines(), counts["translate"], rng
        ),
        "generate": generation_prompts(read_plain_text(paths["generate"]), counts["generate"], rng),
    }
    return {
        "about": {
            "made_by": "python -m loadtest.make_payloads",
            "seed": seed,
            "sources": {task: {"file": SOURCES[task], "sha256": _sha256(p)} for task, p in paths.items()},
        },
        **texts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="dataset root (default: RNNSERVE_DATA_DIR)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or get_training_settings().data_dir
    payloads = make_payloads(data_dir, args.seed)
    args.out.write_text(json.dumps(payloads, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    sizes = {k: len(v) for k, v in payloads.items() if isinstance(v, list)}
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {sizes}")


if __name__ == "__main__":
    main()
