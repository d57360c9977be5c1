import asyncio
import shutil

import tensorflow as tf

import dffml
from dffml import Feature, Features, Model

import dffml_archive


class Embedding(tf.Module):
    """A tiny stand-in for a TensorFlow Hub text embedding (hashed words)."""

    def __init__(self):
        super().__init__()
        self.table = tf.Variable(tf.random.stateless_normal([64, 8], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        words = tf.strings.split(tf.strings.lower(text))
        buckets = tf.strings.to_hash_bucket_fast(words, 64)
        return tf.reduce_mean(tf.gather(self.table, buckets), axis=1)


REVIEWS = [("good great fine", "yes"), ("great movie", "yes"), ("really good", "yes"),
           ("wonderful great", "yes"), ("bad awful", "no"), ("terrible bad", "no"),
           ("awful movie", "no"), ("really bad", "no")]


async def main():
    tf.saved_model.save(Embedding(), "embedding")
    TextClassifier = Model.load("text_classifier_archive")
    model = TextClassifier(
        features=Features(Feature("sentence", str, 1)),
        predict=Feature("liked", str, 1),
        classifications=["no", "yes"],
        model_path="embedding",  # a SavedModel directory or a tfhub.dev URL
        epochs=150,
        location="reviews.tar.gz",
    )
    await dffml.train(model, *[{"sentence": s, "liked": liked} for s, liked in REVIEWS])
    shutil.rmtree("embedding")  # the archive does not need it any more

    model = await dffml_archive.load_model("reviews.tar.gz")
    print("classes from the archive:", model.config.classifications)
    async for key, features, prediction in dffml.predict(
        model, {"sentence": "great fine movie"}, {"sentence": "awful and terrible"}
    ):
        liked = prediction["liked"]
        print(f"{features['sentence']!r} -> {liked['value']} "
              f"(probability {liked['confidence']:.2f})")


asyncio.run(main())
