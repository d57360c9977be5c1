import asyncio
import os
import shutil

import dffml
from dffml import Feature, Features, Model

import dffml_archive

# Price (thousands) of a flat from its area (100 m2) and number of rooms.
FLATS = [
    {"area": area, "rooms": rooms, "price": 50 * area + 10 * rooms}
    for area in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    for rooms in (1, 2, 3, 4)
]


async def main():
    XGBRegressor = Model.load("xgbregressor_archive")
    model = XGBRegressor(
        features=Features(Feature("area", float, 1), Feature("rooms", int, 1)),
        predict=Feature("price", float, 1),
        n_estimators=300,
        learning_rate=0.1,
        location="house.zip",
    )
    await dffml.train(model, *FLATS)
    print("R2:", round(await dffml.accuracy(model, *FLATS), 3))

    # Ship the archive; the file alone gives back the configured model.
    os.mkdir("shipped")
    shutil.move("house.zip", "shipped/house.zip")
    model = await dffml_archive.load_model("shipped/house.zip")
    print("n_estimators from the archive:", model.config.n_estimators)
    async for key, features, prediction in dffml.predict(
        model, {"area": 1.0, "rooms": 3}, {"area": 1.25, "rooms": 2}
    ):
        price = prediction["price"]
        print(f"{features['area']} x 100 m2, {features['rooms']} rooms -> "
              f"{price['value']:.0f} (confidence {price['confidence']})")


asyncio.run(main())
