import asyncio

import dffml
from dffml import Model

import dffml_archive

TRAIN = [
    ("I went to Switzerland.", [(10, 21, "LOC")]),
    ("I like India and Japan.", [(7, 12, "LOC"), (17, 22, "LOC")]),
    ("Who is Albert Einstein?", [(7, 22, "PERSON")]),
    ("World needs Nikola Tesla.", [(12, 24, "PERSON")]),
    ("Marie Curie lived in France.", [(0, 11, "PERSON"), (21, 27, "LOC")]),
    ("We flew to Canada with Ada Lovelace.", [(11, 17, "LOC"), (23, 35, "PERSON")]),
]


async def main():
    SpacyNER = Model.load("spacyner_archive")
    model = SpacyNER(model_name_or_path="en", n_iter=20, location="ner.tar.gz")
    records = [{"sentence": text, "entities": entities} for text, entities in TRAIN]
    await dffml.train(model, *records)
    print("F1 on the training sentences:", await dffml.accuracy(model, *records))

    model = await dffml_archive.load_model("ner.tar.gz")
    print("n_iter from the archive:", model.config.n_iter)
    sentences = [{"sentence": "Marie Curie went to Japan."}, {"sentence": "Ada Lovelace liked Canada."}]
    async for key, features, prediction in dffml.predict(model, *sentences):
        for text, label, start, end in prediction["Tag"]["value"]:
            print(f"{features['sentence']!r}: {text!r} is {label} ({start}-{end})")


asyncio.run(main())
