#!/usr/bin/env bash
# Quick start: set up, then train and evaluate SpanDec on CoNLL++ with the
# offline MiniLM encoder on a reduced CPU budget, then annotate a text.
#   bash scripts/quickstart.sh            # ~15 minutes on 2 CPU cores
#   STEPS=2000 bash scripts/quickstart.sh # a longer budget
# The full benchmark run is `spacy project run all` (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-300}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[encoder,benchmark]"

if [ -z "${SPANDEC_DATA_MIRROR:-}" ] && [ -d ../shared/datasets/upstream ]; then
    export SPANDEC_DATA_MIRROR="$(cd ../shared/datasets/upstream && pwd)"
fi
if [ -z "${SPANDEC_DATASETS_DIR:-}" ] && [ -d ../shared/datasets ]; then
    export SPANDEC_DATASETS_DIR="$(cd ../shared/datasets && pwd)"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

python -m spacy project run assets . --vars.dataset conllpp
python -m spacy project run convert . --vars.dataset conllpp
python -m spacy project run convert-documents . --vars.dataset conllpp
python -m spacy project run train . --vars.dataset conllpp --vars.config spandec \
    --vars.max_steps "$STEPS" --vars.eval_frequency "$((STEPS / 2))" --vars.dev_limit 500
# Scores go under training/ (not metrics/, which holds the committed results).
python -m spacy evaluate training/conllpp/spandec/model-best corpus/conllpp/test.spacy \
    --output training/conllpp/spandec/quickstart_test.json
python -m spacy evaluate training/conllpp/spandec/model-best corpus/conllpp_documents/test.spacy \
    --output training/conllpp/spandec/quickstart_test_documents.json
python - <<'PY'
import json
import spacy

for name, path in [("sentences", "quickstart_test"), ("whole documents", "quickstart_test_documents")]:
    scores = json.load(open(f"training/conllpp/spandec/{path}.json"))
    print(f"CoNLL++ test, {name}: seqeval F1 {100 * scores['seqeval_f']:.1f}, ents_f {100 * scores['ents_f']:.1f}")
nlp = spacy.load("training/conllpp/spandec/model-best")
doc = nlp("Angela Merkel met Emmanuel Macron in Berlin to discuss the European Union budget .")
for ent in doc.ents:
    print(f"{ent.text!r:28} {ent.label_:5} chars {ent.start_char}-{ent.end_char}")
print("all spans:", [(s.text, s.label_, round(p, 3)) for s, p in zip(doc.spans["spandec"], doc.spans["spandec"].attrs["scores"])])
PY
