import asyncio
import shutil

import dffml
from dffml import Feature, Features, Model

import dffml_archive


async def main():
    SLR = Model.load("slr_archive")
    model = SLR(
        features=Features(Feature("x", float, 1)),
        predict=Feature("y", float, 1),
        location="model.zip",
    )
    # y = 2x + 1
    await dffml.train(model, *[{"x": x, "y": 2 * x + 1} for x in range(5)])
    print("accuracy:", await dffml.accuracy(model, {"x": 5, "y": 11}, {"x": 6, "y": 13}))

    # Later, anywhere: the archive alone gives back the configured model.
    shutil.move("model.zip", "moved.zip")
    model = await dffml_archive.load_model("moved.zip")
    async for key, features, prediction in dffml.predict(model, {"x": 2.5}, {"x": 20}):
        print(f"x={features['x']} -> y={prediction['y']['value']}")


asyncio.run(main())
