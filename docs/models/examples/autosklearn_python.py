import asyncio
import os
import shutil

import dffml
from dffml import Feature, Features, Model

import dffml_archive

# y = x^2 on a grid
CURVE = [{"x": x / 4, "y": (x / 4) ** 2} for x in range(-12, 13)]


async def main():
    AutoRegressor = Model.load("autoregressor_archive")
    model = AutoRegressor(
        features=Features(Feature("x", float, 1)),
        predict=Feature("y", float, 1),
        # A small budget: one pipeline (auto-sklearn wants at least 30 s).
        time_left_for_this_task=30,
        per_run_time_limit=10,
        initial_configurations_via_metalearning=0,
        smac_scenario_args={"runcount_limit": 1},
        location="curve.zip",
    )
    await dffml.train(model, *CURVE)
    print("R2 above 0.9:", await dffml.accuracy(model, *CURVE) > 0.9)

    os.mkdir("shipped")
    shutil.move("curve.zip", "shipped/curve.zip")
    model = await dffml_archive.load_model("shipped/curve.zip")
    async for key, features, prediction in dffml.predict(model, {"x": -2.0}, {"x": 0.1}, {"x": 2.4}):
        print(f"x={features['x']} -> y={prediction['y']['value']:.1f}")


asyncio.run(main())
