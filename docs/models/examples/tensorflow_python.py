import asyncio

import dffml
from dffml import Feature, Features, Model

import dffml_archive


async def main():
    DNNRegressor = Model.load("tfdnnr_archive")
    model = DNNRegressor(
        features=Features(Feature("x", float, 1)),
        predict=Feature("y", float, 1),
        hidden=[16, 16],
        location="line.tar.gz",
    )
    # y = 2x + 1.  Upstream's regressor makes one pass over the records,
    # whatever -model-epochs says (20 records a step): give it many.
    xs = [(i % 200) / 40 for i in range(6000)]
    await dffml.train(model, *[{"x": x, "y": 2 * x + 1} for x in xs])

    model = await dffml_archive.load_model("line.tar.gz")
    print("hidden layers from the archive:", model.config.hidden)
    async for key, features, prediction in dffml.predict(model, {"x": 1.0}, {"x": 3.0}):
        # Upstream predicts NaN confidence for regressions.
        print(f"x={features['x']} -> y={prediction['y']['value']:.1f}")


asyncio.run(main())
