import asyncio

import dffml
from dffml import Feature, Features, Model

import dffml_archive

POINTS = [(1.0, 1.0), (1.3, 1.1), (0.8, 1.3), (1.1, 0.7),
          (5.0, 1.0), (5.3, 1.1), (4.8, 1.3), (5.1, 0.7)]


async def main():
    KMeans = Model.load("scikitkmeans_archive")
    model = KMeans(
        features=Features(Feature("a", float, 1), Feature("b", float, 1)),
        n_clusters=2,
        n_init=10,
        random_state=0,
        location="clusters.tar",
    )
    rows = [{"a": a, "b": b} for a, b in POINTS]
    await dffml.train(model, *rows)
    print("silhouette:", round(await dffml.accuracy(model, *rows), 3))

    model = await dffml_archive.load_model("clusters.tar")
    print("n_clusters from the archive:", model.config.n_clusters)
    near = [{"a": 1.0, "b": 1.2}, {"a": 1.1, "b": 0.9}, {"a": 5.2, "b": 0.9}]
    clusters = []
    async for key, features, prediction in dffml.predict(model, *near):
        clusters.append(prediction["cluster"]["value"])
        print(f"({features['a']}, {features['b']}): confidence "
              f"{prediction['cluster']['confidence']:.3f}")
    print("first two together:", clusters[0] == clusters[1])
    print("third apart:", clusters[2] != clusters[0])


asyncio.run(main())
