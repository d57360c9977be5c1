import asyncio

import dffml
from dffml import Feature, Features, Model

import dffml_archive

# Mostly small values; 7, 5, 9 and 3 are anomalies (Y = 1).
VALUES = [0.65, 0.24, 0.93, 0.87, 0.23, 7, 0.86, 0.45, 0.55, 0.29, 5, 0.51,
          0.88, 0.24, 0.51, 0.17, 9, 0.37, 0.23, 0.44, 0.62, 3, 0.87]


async def main():
    Anomaly = Model.load("anomalydetection_archive")
    model = Anomaly(
        features=Features(Feature("A", float, 1)),
        predict=Feature("Y", int, 1),
        k=0.75,  # an option (default 0.8): stored in the archive with the model
        location="anomalies.tar.bz2",
    )
    await dffml.train(model, *[{"A": value, "Y": int(value > 2)} for value in VALUES])

    model = await dffml_archive.load_model("anomalies.tar.bz2")
    print("k from the archive:", model.config.k)
    async for key, features, prediction in dffml.predict(model, {"A": 0.5}, {"A": 8.0}):
        print(f"A={features['A']} -> anomaly={prediction['Y']['value']}")


asyncio.run(main())
