import asyncio
import os
import shutil

import dffml
from dffml import Feature, Features, Model

import dffml_archive

# Tomorrow's temperature (C) from today's and the wind (Beaufort); each
# example is tagged with its day.
DAYS = [
    {"day": f"day{i}", "today": today, "wind": wind, "tomorrow": 0.8 * today + 2 - wind}
    for i, (today, wind) in enumerate(
        (today, wind) for today in (5, 10, 15, 20, 25) for wind in (0, 1, 2, 3)
    )
]


async def main():
    VW = Model.load("vwmodel_archive")
    model = VW(
        features=Features(Feature("today", float, 1), Feature("wind", int, 1)),
        predict=Feature("tomorrow", float, 1),
        tag=Feature("day", str, 1),
        passes=20,
        learning_rate=10.0,
        location="weather.tar.gz",
    )
    await dffml.train(model, *DAYS)
    # R2, stored in the archive: the confidence of the predictions.
    print("R2:", round(await dffml.accuracy(model, *DAYS), 3))

    os.mkdir("shipped")
    shutil.move("weather.tar.gz", "shipped/weather.tar.gz")
    model = await dffml_archive.load_model("shipped/weather.tar.gz")
    print("passes from the archive:", model.config.passes)
    async for key, features, prediction in dffml.predict(
        model, {"today": 12, "wind": 1}, {"today": 22, "wind": 3}
    ):
        tomorrow = prediction["tomorrow"]
        print(f"{features['today']} C, wind {features['wind']} -> {tomorrow['value']:.1f} C "
              f"(confidence {tomorrow['confidence']:.3f})")


asyncio.run(main())
