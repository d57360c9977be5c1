# Sentences and their entities: (start, end, label) character spans.
cat > people.json <<'JSON'
{"untagged": {
  "0": {"features": {"sentence": "I went to Switzerland.", "entities": [[10, 21, "LOC"]]}},
  "1": {"features": {"sentence": "I like India and Japan.", "entities": [[7, 12, "LOC"], [17, 22, "LOC"]]}},
  "2": {"features": {"sentence": "Who is Albert Einstein?", "entities": [[7, 22, "PERSON"]]}},
  "3": {"features": {"sentence": "World needs Nikola Tesla.", "entities": [[12, 24, "PERSON"]]}},
  "4": {"features": {"sentence": "Marie Curie lived in France.", "entities": [[0, 11, "PERSON"], [21, 27, "LOC"]]}},
  "5": {"features": {"sentence": "We flew to Canada with Ada Lovelace.", "entities": [[11, 17, "LOC"], [23, 35, "PERSON"]]}}
}}
JSON
cat > unknown.json <<'JSON'
{"untagged": {
  "0": {"features": {"sentence": "Albert Einstein went to Japan."}},
  "1": {"features": {"sentence": "Nikola Tesla liked India."}}
}}
JSON

# A blank English pipeline (the default, -model-model_name_or_path en)
# learns the entities; nothing is downloaded.
dffml train -model spacyner_archive -model-n_iter 20 -model-location ner.zip \
    -sources f=json -source-filename people.json
# Entity-level F1; stored, it is the confidence of later predictions.
dffml accuracy -model spacyner_archive -model-location ner.zip \
    -sources f=json -source-filename people.json

mkdir -p shipped
mv ner.zip shipped/
dffml predict all -model spacyner_archive -model-location shipped/ner.zip \
    -sources f=json -source-filename unknown.json
