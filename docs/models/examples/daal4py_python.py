import asyncio
import os
import shutil

import dffml
from dffml import Feature, Features, Model

import dffml_archive

# z = 3 x - 2 y + 1
POINTS = [{"x": x, "y": y, "z": 3 * x - 2 * y + 1} for x in range(4) for y in range(3)]


async def main():
    LinearRegression = Model.load("daal4pylr_archive")
    model = LinearRegression(
        features=Features(Feature("x", float, 1), Feature("y", float, 1)),
        predict=Feature("z", float, 1),
        location="line.zip",
    )
    await dffml.train(model, *POINTS)
    print("accuracy:", await dffml.accuracy(model, *POINTS))

    os.mkdir("elsewhere")
    shutil.move("line.zip", "elsewhere/line.zip")
    model = await dffml_archive.load_model("elsewhere/line.zip")
    async for key, features, prediction in dffml.predict(model, {"x": 10, "y": 4}):
        print(f"x={features['x']} y={features['y']} -> z={prediction['z']['value']:.3f}")


asyncio.run(main())
